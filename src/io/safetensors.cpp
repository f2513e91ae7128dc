#include "io/safetensors.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"

namespace bitnet {

namespace {

using json = nlohmann::json;

// The reference implementation refuses headers larger than this.
constexpr uint64_t kMaxHeader = 100u << 20;
constexpr uint64_t kMaxIndex = 100u << 20;

struct StType {
  std::string_view name;
  size_t bytes;
  std::optional<DType> ours;
};
constexpr std::array<StType, 15> kTypes = {{
    {"F32", 4, DType::F32},   {"F16", 2, DType::F16},   {"BF16", 2, DType::BF16},
    {"I8", 1, DType::I8},     {"U8", 1, DType::I8},     {"I32", 4, DType::I32},
    {"BOOL", 1, std::nullopt}, {"I16", 2, std::nullopt}, {"U16", 2, std::nullopt},
    {"U32", 4, std::nullopt}, {"F64", 8, std::nullopt}, {"I64", 8, std::nullopt},
    {"U64", 8, std::nullopt}, {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
}};

const StType* find_type(std::string_view name) {
  for (const auto& t : kTypes)
    if (t.name == name) return &t;
  return nullptr;
}

// JSON parse that refuses duplicate keys in any object (nlohmann would keep the last one).
json parse_json(const char* begin, const char* end, const std::string& what) {
  std::vector<std::set<std::string>> seen;
  auto cb = [&](int, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start) {
      seen.emplace_back();
    } else if (ev == json::parse_event_t::object_end) {
      if (!seen.empty()) seen.pop_back();
    } else if (ev == json::parse_event_t::key && !seen.empty()) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (!seen.back().insert(k).second) fail("{}: duplicate JSON key \"{}\"", what, k);
    }
    return true;
  };
  try {
    return json::parse(begin, end, cb);
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", what, e.what());
  }
}

uint64_t read_u64le(const uint8_t* p) {
  uint64_t x = 0;
  for (int i = 0; i < 8; ++i) x |= static_cast<uint64_t>(p[i]) << (8 * i);
  return x;
}

std::vector<uint8_t> read_whole(const std::string& path, uint64_t limit) {
  auto mf = MappedFile::open(path);
  if (mf->size() > limit) fail("'{}' is {} bytes, more than the {} allowed", path, mf->size(), limit);
  return std::vector<uint8_t>(mf->data(), mf->data() + mf->size());
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::FILE* fp = std::fopen(path.c_str(), "wb");
  if (!fp) fail("cannot create '{}': {}", path, std::strerror(errno));
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), fp) == bytes.size();
  if (std::fclose(fp) != 0 || !ok) fail("cannot write '{}': {}", path, std::strerror(errno));
}

}  // namespace

std::optional<size_t> safetensors_dtype_size(std::string_view dtype) {
  const StType* t = find_type(dtype);
  return t ? std::optional<size_t>(t->bytes) : std::nullopt;
}

std::optional<DType> dtype_from_safetensors(std::string_view dtype) {
  const StType* t = find_type(dtype);
  return t ? t->ours : std::nullopt;
}

std::optional<std::string_view> safetensors_from_dtype(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I8: return "I8";
    case DType::I32: return "I32";
    default: return std::nullopt;
  }
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto mf = MappedFile::open(path);
  const uint8_t* d = mf->data();
  const size_t n = mf->size();
  return parse(std::move(mf), d, n, path);
}

SafetensorsFile SafetensorsFile::parse(std::shared_ptr<const void> owner, const uint8_t* data,
                                       size_t size, std::string name) {
  SafetensorsFile f;
  f.name_ = std::move(name);
  f.owner_ = std::move(owner);
  f.data_ = data;
  f.size_ = size;
  const std::string& fn = f.name_;
  if (size < 8) fail("{}: truncated: {} bytes, a safetensors file starts with an 8-byte header length", fn, size);
  const uint64_t n = read_u64le(data);
  if (n > kMaxHeader) fail("{}: header length {} exceeds the {} byte limit (not a safetensors file?)", fn, n, kMaxHeader);
  if (n > size - 8)
    fail("{}: header length {} runs past the end of the file ({} bytes)", fn, n, size);
  if (n < 2 || data[8] != '{') fail("{}: header (byte offset 8) is not a JSON object", fn);
  f.data_offset_ = 8 + static_cast<size_t>(n);
  const auto* hb = reinterpret_cast<const char*>(data + 8);
  const json h = parse_json(hb, hb + n, fn + ": header");
  if (!h.is_object()) fail("{}: header is not a JSON object", fn);
  const uint64_t data_size = size - f.data_offset_;

  for (const auto& [key, val] : h.items()) {
    if (key == "__metadata__") {
      if (!val.is_object()) fail("{}: __metadata__ is not an object", fn);
      for (const auto& [mk, mv] : val.items()) {
        if (!mv.is_string()) fail("{}: __metadata__ value of \"{}\" is not a string", fn, mk);
        f.metadata_.emplace_back(mk, mv.get<std::string>());
      }
      continue;
    }
    SafetensorsTensorInfo t;
    t.name = key;
    if (!val.is_object()) fail("{}: tensor '{}': entry is not an object", fn, key);
    const auto dt = val.find("dtype");
    if (dt == val.end() || !dt->is_string()) fail("{}: tensor '{}': missing string \"dtype\"", fn, key);
    t.dtype = dt->get<std::string>();
    const StType* type = find_type(t.dtype);
    if (!type) fail("{}: tensor '{}': unsupported dtype \"{}\"", fn, key, t.dtype);
    const auto sh = val.find("shape");
    if (sh == val.end() || !sh->is_array()) fail("{}: tensor '{}': missing array \"shape\"", fn, key);
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned())
        fail("{}: tensor '{}': shape entry {} is not a non-negative integer", fn, key, d.dump());
      const auto x = d.get<uint64_t>();
      if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          __builtin_mul_overflow(numel, x, &numel) ||
          numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail("{}: tensor '{}': shape {} overflows", fn, key, sh->dump());
      t.shape.push_back(static_cast<int64_t>(x));
    }
    const auto off = val.find("data_offsets");
    if (off == val.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      fail("{}: tensor '{}': \"data_offsets\" must be [begin, end] of non-negative integers", fn, key);
    t.begin = (*off)[0].get<uint64_t>();
    t.end = (*off)[1].get<uint64_t>();
    if (t.begin > t.end)
      fail("{}: tensor '{}': data_offsets [{}, {}) are reversed", fn, key, t.begin, t.end);
    if (t.end > data_size)
      fail("{}: tensor '{}': data_offsets [{}, {}) run past the end of the data ({} bytes from "
           "byte offset {})", fn, key, t.begin, t.end, data_size, f.data_offset_);
    uint64_t want = 0;
    if (__builtin_mul_overflow(numel, uint64_t{type->bytes}, &want))
      fail("{}: tensor '{}': {} {} overflows", fn, key, t.dtype, sh->dump());
    if (want != t.end - t.begin)
      fail("{}: tensor '{}': {} {} needs {} bytes but data_offsets [{}, {}) hold {}", fn, key,
           t.dtype, sh->dump(), want, t.begin, t.end, t.end - t.begin);
    f.tensors_.push_back(std::move(t));
  }
  std::sort(f.metadata_.begin(), f.metadata_.end());
  std::stable_sort(f.tensors_.begin(), f.tensors_.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (const auto& t : f.tensors_) {
    if (t.begin < pos)
      fail("{}: tensor '{}' (data_offsets [{}, {})) overlaps the previous tensor (which ends at {})",
           fn, t.name, t.begin, t.end, pos);
    if (t.begin > pos)
      fail("{}: gap in the data before tensor '{}' (bytes [{}, {}) belong to no tensor)", fn,
           t.name, pos, t.begin);
    pos = t.end;
  }
  if (pos != data_size)
    fail("{}: {} bytes after the last tensor's data belong to no tensor", fn, data_size - pos);
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
  return f;
}

const SafetensorsTensorInfo* SafetensorsFile::find_tensor(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Tensor SafetensorsFile::tensor(std::string_view name) const {
  const SafetensorsTensorInfo* t = find_tensor(name);
  if (!t) fail("{}: no tensor named '{}'", name_, name);
  return tensor(*t);
}

Tensor SafetensorsFile::tensor(const SafetensorsTensorInfo& t) const {
  const auto dt = dtype_from_safetensors(t.dtype);
  if (!dt) fail("{}: tensor '{}': dtype {} cannot be loaded as a tensor", name_, t.name, t.dtype);
  return Tensor::borrow(*dt, t.shape, tensor_data(t), owner_, t.name);
}

// ---------------------------------------------------------------------------------------------

void SafetensorsModel::add_file(SafetensorsFile f) {
  const size_t fi = files.size();
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const auto& name = f.tensors()[i].name;
    if (auto it = where_.find(name); it != where_.end())
      fail("tensor '{}' is in both '{}' and '{}'", name, files[it->second.first].name(), f.name());
    where_.emplace(name, std::make_pair(fi, i));
  }
  files.push_back(std::move(f));
}

SafetensorsModel SafetensorsModel::open(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const fs::path dir(path);
    if (fs::exists(dir / "model.safetensors.index.json", ec))
      return open_index((dir / "model.safetensors.index.json").string());
    if (fs::exists(dir / "model.safetensors", ec)) return open((dir / "model.safetensors").string());
    fail("'{}' holds neither model.safetensors.index.json nor model.safetensors", path);
  }
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0) return open_index(path);
  SafetensorsModel m;
  m.add_file(SafetensorsFile::open(path));
  return m;
}

SafetensorsModel SafetensorsModel::open_index(const std::string& index_path) {
  namespace fs = std::filesystem;
  const auto text = read_whole(index_path, kMaxIndex);
  const auto* b = reinterpret_cast<const char*>(text.data());
  const json j = parse_json(b, b + text.size(), index_path);
  if (!j.is_object()) fail("{}: not a JSON object", index_path);
  SafetensorsModel m;
  if (auto md = j.find("metadata"); md != j.end() && md->is_object())
    for (const auto& [k, v] : md->items()) m.index_metadata.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
  const auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object()) fail("{}: missing object \"weight_map\"", index_path);
  std::vector<std::string> shards;
  for (const auto& [tensor, shard] : wm->items()) {
    if (!shard.is_string()) fail("{}: weight_map entry '{}' is not a string", index_path, tensor);
    const auto& s = shard.get_ref<const std::string&>();
    const fs::path p(s);
    bool bad = s.empty() || p.is_absolute();
    for (const auto& part : p) bad |= part == "..";
    if (bad) fail("{}: weight_map entry '{}' names shard '{}' outside the model folder", index_path, tensor, s);
    if (std::find(shards.begin(), shards.end(), s) == shards.end()) shards.push_back(s);
  }
  const fs::path dir = fs::path(index_path).parent_path();
  for (const auto& s : shards) m.add_file(SafetensorsFile::open((dir / s).string()));
  for (const auto& [tensor, shard] : wm->items()) {
    const SafetensorsFile* f = m.file_of(tensor);
    const std::string want = (dir / shard.get<std::string>()).string();
    if (!f) fail("{}: tensor '{}' is not in its shard '{}'", index_path, tensor, want);
    if (f->name() != want)
      fail("{}: tensor '{}' is in '{}', the weight_map says '{}'", index_path, tensor, f->name(), want);
  }
  return m;
}

const SafetensorsTensorInfo* SafetensorsModel::find_tensor(std::string_view name) const {
  auto it = where_.find(std::string(name));
  return it == where_.end() ? nullptr : &files[it->second.first].tensors()[it->second.second];
}

const SafetensorsFile* SafetensorsModel::file_of(std::string_view name) const {
  auto it = where_.find(std::string(name));
  return it == where_.end() ? nullptr : &files[it->second.first];
}

Tensor SafetensorsModel::tensor(std::string_view name) const {
  auto it = where_.find(std::string(name));
  if (it == where_.end())
    fail("no tensor named '{}' in {}", name, files.empty() ? std::string("(no files)") : files[0].name());
  const SafetensorsFile& f = files[it->second.first];
  return f.tensor(f.tensors()[it->second.second]);
}

std::vector<std::string> SafetensorsModel::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(where_.size());
  for (const auto& [k, v] : where_) names.push_back(k);
  std::sort(names.begin(), names.end());
  return names;
}

// ---------------------------------------------------------------------------------------------

void SafetensorsWriter::add_tensor(const Tensor& t, std::string name) {
  const auto st = safetensors_from_dtype(t.dtype());
  if (!st) fail("safetensors writer: tensor '{}': type {} has no safetensors dtype", name, dtype_name(t.dtype()));
  add_tensor(name.empty() ? t.name() : std::move(name), std::string(*st), t.shape(),
             std::vector<uint8_t>(t.data(), t.data() + t.nbytes()));
}

void SafetensorsWriter::add_tensor(std::string name, std::string dtype, std::vector<int64_t> shape,
                                   std::vector<uint8_t> bytes) {
  const auto es = safetensors_dtype_size(dtype);
  if (!es) fail("safetensors writer: tensor '{}': unknown dtype \"{}\"", name, dtype);
  size_t n = *es;
  for (auto d : shape) {
    if (d < 0) fail("safetensors writer: tensor '{}': negative dimension", name);
    n *= static_cast<size_t>(d);
  }
  if (n != bytes.size())
    fail("safetensors writer: tensor '{}': {} bytes for {} {}, expected {}", name, bytes.size(), dtype,
         shape_str(shape), n);
  if (name == "__metadata__") fail("safetensors writer: '__metadata__' is not a tensor name");
  for (const auto& t : tensors)
    if (t.name == name) fail("safetensors writer: duplicate tensor name '{}'", name);
  tensors.push_back({std::move(name), std::move(dtype), std::move(shape), std::move(bytes)});
}

std::vector<uint8_t> SafetensorsWriter::serialize() const {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& md = h["__metadata__"] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) md[k] = v;
  }
  uint64_t off = 0;
  for (const auto& t : tensors) {
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + t.bytes.size()}}};
    off += t.bytes.size();
  }
  std::string text = h.dump();
  while (text.size() % 8) text += ' ';
  std::vector<uint8_t> out(8);
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  out.insert(out.end(), text.begin(), text.end());
  for (const auto& t : tensors) out.insert(out.end(), t.bytes.begin(), t.bytes.end());
  return out;
}

void SafetensorsWriter::write(const std::string& path) const { write_file(path, serialize()); }

}  // namespace bitnet
