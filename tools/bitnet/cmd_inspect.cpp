// `bitnet inspect FILE`: metadata and tensor table of a GGUF or safetensors model (a .safetensors
// file, a model.safetensors.index.json or a folder holding one), with code and scale statistics of
// the stored ternary tensors (quant/type_traits.h). `--json` prints the same as one JSON object.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "quant/metrics.h"
#include "quant/type_traits.h"

namespace bitnet::cli {
namespace {

using ojson = nlohmann::ordered_json;

struct Options {
  std::string path;
  bool json = false;
  bool stats = true;
  size_t max_elems = 8;
};

struct Ternary {
  TernaryStats codes;
  ScaleStats scales;
};

// Unpacks a ternary tensor (validating every code) and summarizes it.
Ternary ternary_summary(const Tensor& t) {
  const int64_t n = t.numel();
  std::vector<int8_t> w(static_cast<size_t>(n));
  std::vector<float> s(ternary_scale_count(t.dtype(), n));
  unpack_ternary(t.dtype(), t.data(), n, w.data(), s.data(), t.name());
  return {ternary_stats(w.data(), w.size()), scale_stats(s.data(), s.size())};
}

ojson ternary_json(const Ternary& s) {
  return {{"n", s.codes.n}, {"neg", s.codes.neg}, {"zero", s.codes.zero}, {"pos", s.codes.pos},
          {"sparsity", s.codes.sparsity()},
          {"scales", {{"count", s.scales.count}, {"min", s.scales.min}, {"mean", s.scales.mean},
                      {"max", s.scales.max}}}};
}

void print_ternary_header() {
  std::printf("\nternary tensors (codes -1 / 0 / +1, scales):\n");
  std::printf("  %-40s %-6s %12s %7s %7s %7s %9s %7s %12s %12s %12s\n", "name", "type", "n", "-1%",
              "0%", "+1%", "sparsity", "scales", "min", "mean", "max");
}

void print_ternary_row(const std::string& name, const std::string& type, const Ternary& s) {
  const double n = s.codes.n ? static_cast<double>(s.codes.n) : 1.0;
  std::printf("  %-40s %-6s %12zu %7.2f %7.2f %7.2f %9.4f %7zu %12.6g %12.6g %12.6g\n", name.c_str(),
              type.c_str(), s.codes.n, 100.0 * static_cast<double>(s.codes.neg) / n,
              100.0 * static_cast<double>(s.codes.zero) / n, 100.0 * static_cast<double>(s.codes.pos) / n,
              s.codes.sparsity(), s.scales.count, s.scales.min, s.scales.mean, s.scales.max);
}

ojson value_json(const GgufValue& v, size_t max_elems) {
  auto scalar = [](const auto& x) -> ojson {
    using T = std::decay_t<decltype(x)>;
    if constexpr (std::is_same_v<T, uint64_t> || std::is_same_v<T, int64_t> ||
                  std::is_same_v<T, double> || std::is_same_v<T, bool> ||
                  std::is_same_v<T, std::string>)
      return ojson(x);
    else
      return ojson();
  };
  if (!v.is_array()) return {{"type", gguf_type_name(v.type)}, {"value", std::visit(scalar, v.v)}};
  ojson first = ojson::array();
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::vector<uint64_t>> ||
                      std::is_same_v<T, std::vector<int64_t>> ||
                      std::is_same_v<T, std::vector<double>> ||
                      std::is_same_v<T, std::vector<bool>> ||
                      std::is_same_v<T, std::vector<std::string>>) {
          for (size_t i = 0; i < x.size() && i < max_elems; ++i) {
            if constexpr (std::is_same_v<T, std::vector<bool>>) first.push_back(static_cast<bool>(x[i]));
            else first.push_back(x[i]);
          }
        }
      },
      v.v);
  return {{"type", "array"}, {"elem_type", gguf_type_name(v.elem)}, {"length", v.size()},
          {"first", first}};
}

void inspect_gguf(const Options& o) {
  const GgufFile f = GgufFile::open(o.path);
  ojson j;
  if (o.json) {
    j["file"] = o.path;
    j["format"] = "gguf";
    j["version"] = f.version();
    j["alignment"] = f.alignment();
    j["data_offset"] = f.data_offset();
    j["file_size"] = f.file_size();
    ojson md = ojson::object();
    for (const auto& [k, v] : f.metadata()) md[k] = value_json(v, o.max_elems);
    j["metadata"] = md;
  } else {
    std::printf("file: %s\nformat: GGUF v%u, alignment %u, data section at byte %zu, %zu bytes\n",
                o.path.c_str(), f.version(), f.alignment(), f.data_offset(), f.file_size());
    std::printf("\nmetadata (%zu keys):\n", f.metadata().size());
    for (const auto& [k, v] : f.metadata())
      std::printf("  %-48s %-7s %s\n", k.c_str(),
                  std::string(v.is_array() ? "array" : gguf_type_name(v.type)).c_str(),
                  v.to_string(o.max_elems).c_str());
    std::printf("\ntensors (%zu):\n  %-40s %-6s %-22s %12s %12s\n", f.tensors().size(), "name",
                "type", "shape", "bytes", "offset");
  }
  ojson tensors = ojson::array();
  size_t total = 0;
  for (const auto& t : f.tensors()) {
    total += t.nbytes;
    const size_t abs = f.data_offset() + t.offset;
    if (o.json) {
      tensors.push_back({{"name", t.name}, {"type", ggml_type_name(t.ggml_type)},
                         {"ggml_type", t.ggml_type}, {"shape", t.shape}, {"bytes", t.nbytes},
                         {"offset", abs}});
    } else {
      std::printf("  %-40s %-6s %-22s %12zu %12zu\n", t.name.c_str(),
                  ggml_type_name(t.ggml_type).c_str(), shape_str(t.shape).c_str(), t.nbytes, abs);
    }
  }
  if (!o.json) std::printf("  total tensor bytes: %zu\n", total);
  if (o.stats) {
    bool header = false;
    for (size_t i = 0; i < f.tensors().size(); ++i) {
      const auto& t = f.tensors()[i];
      if (!type_traits(t.dtype).stored_ternary()) continue;
      const Ternary s = ternary_summary(f.tensor(t));
      if (o.json) {
        tensors[i]["ternary"] = ternary_json(s);
      } else {
        if (!header) print_ternary_header();
        header = true;
        print_ternary_row(t.name, ggml_type_name(t.ggml_type), s);
      }
    }
  }
  if (o.json) {
    j["tensors"] = tensors;
    j["total_tensor_bytes"] = total;
    std::printf("%s\n", j.dump(1, ' ', false, ojson::error_handler_t::replace).c_str());
  }
}

void inspect_safetensors(const Options& o) {
  const SafetensorsModel m = SafetensorsModel::open(o.path);
  ojson j;
  if (o.json) {
    j["file"] = o.path;
    j["format"] = "safetensors";
    ojson files = ojson::array();
    for (const auto& f : m.files) {
      ojson md = ojson::object();
      for (const auto& [k, v] : f.metadata()) md[k] = v;
      files.push_back({{"name", f.name()}, {"file_size", f.file_size()},
                       {"data_offset", f.data_offset()}, {"metadata", md}});
    }
    j["files"] = files;
    ojson imd = ojson::object();
    for (const auto& [k, v] : m.index_metadata) imd[k] = v;
    j["index_metadata"] = imd;
  } else {
    std::printf("file: %s\nformat: safetensors, %zu file(s), %zu tensors\n", o.path.c_str(),
                m.files.size(), m.tensor_count());
    for (const auto& [k, v] : m.index_metadata) std::printf("  index %s = %s\n", k.c_str(), v.c_str());
    for (const auto& f : m.files) {
      std::printf("\n%s: %zu bytes, header %zu bytes, %zu tensors\n", f.name().c_str(),
                  f.file_size(), f.data_offset() - 8, f.tensors().size());
      for (const auto& [k, v] : f.metadata())
        std::printf("  __metadata__ %s = \"%s\"\n", k.c_str(), v.c_str());
    }
    std::printf("\ntensors:\n  %-48s %-7s %-22s %12s %12s\n", "name", "dtype", "shape", "bytes",
                "offset");
  }
  ojson tensors = ojson::array();
  size_t total = 0;
  for (const auto& name : m.tensor_names()) {
    const SafetensorsTensorInfo& t = *m.find_tensor(name);
    const SafetensorsFile& f = *m.file_of(name);
    const size_t abs = f.data_offset() + t.begin;
    total += t.nbytes();
    if (o.json) {
      ojson e = {{"name", t.name}, {"dtype", t.dtype}, {"shape", t.shape}, {"bytes", t.nbytes()},
                 {"offset", abs}};
      if (m.files.size() > 1) e["file"] = f.name();
      tensors.push_back(e);
    } else {
      std::printf("  %-48s %-7s %-22s %12zu %12zu%s%s\n", t.name.c_str(), t.dtype.c_str(),
                  shape_str(t.shape).c_str(), t.nbytes(), abs, m.files.size() > 1 ? "  " : "",
                  m.files.size() > 1 ? std::filesystem::path(f.name()).filename().c_str() : "");
    }
  }
  if (o.json) {
    j["tensors"] = tensors;
    j["total_tensor_bytes"] = total;
    std::printf("%s\n", j.dump(1, ' ', false, ojson::error_handler_t::replace).c_str());
  } else {
    std::printf("  total tensor bytes: %zu\n", total);
  }
}

bool looks_like_gguf(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return false;
  auto f = MappedFile::open(path);
  return f->size() >= 4 && std::memcmp(f->data(), "GGUF", 4) == 0;
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto opts = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "inspect", "Show the metadata and tensor table of a GGUF or safetensors model file");
  cmd->add_option("file", opts->path,
                  "GGUF file, .safetensors file, model.safetensors.index.json, or a folder")
      ->required();
  cmd->add_flag("--json", opts->json, "Print one JSON object instead of text");
  cmd->add_flag("!--no-stats", opts->stats, "Skip unpacking ternary tensors for statistics");
  cmd->add_option("--max-elems", opts->max_elems, "Array elements shown per metadata value")
      ->capture_default_str();
  cmd->callback([opts] {
    if (looks_like_gguf(opts->path)) inspect_gguf(*opts);
    else inspect_safetensors(*opts);
  });
}

}  // namespace bitnet::cli
