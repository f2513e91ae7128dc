#include "training/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"

namespace bitnet::train {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

constexpr char kMagic[8] = {'B', 'N', 'C', 'K', 'P', 'T', '0', '1'};

struct Fnv {
  uint64_t h = 0xcbf29ce484222325ull;
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  }
};

// Writes all of [p, p + n) to fd, failing loudly on a short write.
void write_all(int fd, const void* p, size_t n, const std::string& path, Fnv* sum) {
  if (sum) sum->add(p, n);
  const auto* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, b, n);
    if (w <= 0) {
      ::close(fd);
      fail("{}: write failed: {}", path, std::strerror(errno));
    }
    b += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

ojson config_to_json(const ModelConfig& c) {
  return {{"arch", c.arch},
          {"n_vocab", c.n_vocab},
          {"n_embd", c.n_embd},
          {"n_layer", c.n_layer},
          {"n_head", c.n_head},
          {"n_head_kv", c.n_head_kv},
          {"head_dim", c.head_dim},
          {"n_ff", c.n_ff},
          {"n_ctx_train", c.n_ctx_train},
          {"rope_dim", c.rope_dim},
          {"rope_theta", c.rope_theta},
          {"rms_eps", c.rms_eps},
          {"rope", c.rope == RopeStyle::kNeox ? "neox" : "norm"},
          {"act", c.act == FfnAct::kRelu2 ? "relu2" : "silu"},
          {"sub_norms", c.sub_norms}};
}

ModelConfig config_from_json(const nlohmann::json& j, const std::string& what) {
  try {
    ModelConfig c;
    c.arch = j.at("arch").get<std::string>();
    c.n_vocab = j.at("n_vocab").get<int64_t>();
    c.n_embd = j.at("n_embd").get<int64_t>();
    c.n_layer = j.at("n_layer").get<int64_t>();
    c.n_head = j.at("n_head").get<int64_t>();
    c.n_head_kv = j.at("n_head_kv").get<int64_t>();
    c.head_dim = j.at("head_dim").get<int64_t>();
    c.n_ff = j.at("n_ff").get<int64_t>();
    c.n_ctx_train = j.at("n_ctx_train").get<int64_t>();
    c.rope_dim = j.at("rope_dim").get<int64_t>();
    c.rope_theta = j.at("rope_theta").get<float>();
    c.rms_eps = j.at("rms_eps").get<float>();
    const std::string rope = j.at("rope").get<std::string>(), act = j.at("act").get<std::string>();
    if (rope != "neox" && rope != "norm") fail("{}: rope must be neox or norm, not '{}'", what, rope);
    if (act != "relu2" && act != "silu") fail("{}: act must be relu2 or silu, not '{}'", what, act);
    c.rope = rope == "neox" ? RopeStyle::kNeox : RopeStyle::kNorm;
    c.act = act == "relu2" ? FfnAct::kRelu2 : FfnAct::kSilu;
    c.sub_norms = j.at("sub_norms").get<bool>();
    validate(c);
    return c;
  } catch (const nlohmann::json::exception& e) {
    fail("{}: bad model config: {}", what, e.what());
  }
}

void save_checkpoint(const std::string& path, const TrainModel& m, const AdamWState& opt,
                     const Checkpoint& ck) {
  const size_t n = m.params.size();
  if (opt.step > 0 && (opt.m.size() != n || opt.v.size() != n))
    fail("checkpoint: optimizer state does not match");
  ojson h = {{"format", "bitnet training checkpoint"},
             {"settings", ck.settings},
             {"config", config_to_json(m.cfg)},
             {"tied", m.tied},
             {"quantize", m.quantize},
             {"params", n},
             {"step", ck.step},
             {"adam_step", opt.step},
             {"rng", ck.rng},
             {"tokens", ck.tokens}};
  const std::string header = h.dump();
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail("{}: cannot create: {}", tmp, std::strerror(errno));
  Fnv sum;
  const uint64_t hl = header.size();
  write_all(fd, kMagic, 8, tmp, &sum);
  write_all(fd, &hl, 8, tmp, &sum);
  write_all(fd, header.data(), header.size(), tmp, &sum);
  write_all(fd, m.params.data(), n * 4, tmp, &sum);
  const std::vector<float> zeros(opt.m.empty() ? n : 0, 0.0f);
  write_all(fd, opt.m.empty() ? zeros.data() : opt.m.data(), n * 4, tmp, &sum);
  write_all(fd, opt.v.empty() ? zeros.data() : opt.v.data(), n * 4, tmp, &sum);
  write_all(fd, &sum.h, 8, tmp, nullptr);
  if (::fsync(fd) != 0 || ::close(fd) != 0) fail("{}: fsync failed: {}", tmp, std::strerror(errno));
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail("{}: cannot rename to {}: {}", tmp, path, ec.message());
  // The rename itself is durable once the folder is synced.
  const std::string dir = fs::absolute(path).parent_path().string();
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void load_checkpoint(const std::string& path, TrainModel& m, AdamWState& opt, Checkpoint& ck) {
  const auto f = MappedFile::open(path);
  const uint8_t* p = f->data();
  const size_t size = f->size();
  if (size < 24 || std::memcmp(p, kMagic, 8) != 0) fail("{}: not a bitnet training checkpoint", path);
  uint64_t hl;
  std::memcpy(&hl, p + 8, 8);
  if (hl > size - 24) fail("{}: truncated checkpoint (header of {} bytes in a file of {})", path, hl, size);
  nlohmann::json h = nlohmann::json::parse(p + 16, p + 16 + hl, nullptr, false);
  if (h.is_discarded() || !h.is_object()) fail("{}: corrupt checkpoint header", path);
  try {
    const size_t n = h.at("params").get<size_t>();
    const size_t want = 16 + hl + 3 * n * 4 + 8;
    if (n > size || size != want)
      fail("{}: checkpoint is {} bytes, its header needs {} (truncated?)", path, size, want);
    Fnv sum;
    sum.add(p, size - 8);
    uint64_t stored;
    std::memcpy(&stored, p + size - 8, 8);
    if (stored != sum.h) fail("{}: checkpoint checksum mismatch (the file is corrupt)", path);
    const ModelConfig c = config_from_json(h.at("config"), path);
    m = make_train_model(c, h.at("tied").get<bool>(), h.at("quantize").get<bool>(), 0);
    if (m.params.size() != n)
      fail("{}: checkpoint holds {} parameters, its config needs {}", path, n, m.params.size());
    const uint8_t* body = p + 16 + hl;
    std::memcpy(m.params.data(), body, n * 4);
    opt.m.resize(n);
    opt.v.resize(n);
    std::memcpy(opt.m.data(), body + n * 4, n * 4);
    std::memcpy(opt.v.data(), body + 2 * n * 4, n * 4);
    opt.step = h.at("adam_step").get<int64_t>();
    if (opt.step == 0) {
      opt.m.clear();
      opt.v.clear();
    }
    ck.settings = h.at("settings");
    ck.step = h.at("step").get<int64_t>();
    ck.rng = h.at("rng").get<uint64_t>();
    ck.tokens = h.at("tokens").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: corrupt checkpoint header: {}", path, e.what());
  }
}

}  // namespace bitnet::train
