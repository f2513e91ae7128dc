// `bitnet convert`: a Hugging Face BitNet b1.58 checkpoint folder -> GGUF.
#include <unistd.h>

#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "model/convert_hf.h"
#include "quant/type_traits.h"

namespace bitnet::cli {

void register_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "Convert a Hugging Face BitNet checkpoint folder to GGUF");
  struct Opts {
    std::string dir, out, type = "i2_s", embd = "auto";
  };
  static Opts o;
  cmd->add_option("dir", o.dir, "checkpoint folder (config.json, *.safetensors, tokenizer.json)")->required();
  cmd->add_option("-o,--output", o.out, "output GGUF file")->required();
  cmd->add_option("--type", o.type, "ternary layer type")
      ->check(CLI::IsMember(type_names(&TypeTraits::pack)));
  cmd->add_option(
         "--embd-type", o.embd,
         "embedding / untied head type; auto: q6_k when the width is a multiple of 256, else q8_0 when "
         "a multiple of 32, else f16 (chosen by measured quality and speed: docs/PERFORMANCE.md)")
      ->check(CLI::IsMember([] {
        auto names = type_names(&TypeTraits::quantize);
        names.insert(names.begin(), "auto");
        return names;
      }()));
  cmd->callback([] {
    ConvertOptions opt;
    opt.ternary_type = *dtype_from_name(o.type);
    const ModelConfig c = hf_config(o.dir);
    opt.embd_type = o.embd == "auto" ? default_embd_type(c) : *dtype_from_name(o.embd);
    const bool tty = isatty(STDERR_FILENO) != 0;
    if (tty)
      opt.progress = [](size_t i, size_t n, const std::string& name) {
        std::fprintf(stderr, "\rconvert: tensor %zu/%zu %-40s", i, n, name.c_str());
        std::fflush(stderr);
      };
    const GgufWriter w = convert_hf(o.dir, opt);
    if (tty) std::fprintf(stderr, "\rconvert: writing %s%-40s\n", o.out.c_str(), "");
    w.write(o.out);
    std::printf("wrote %s: %s, %s layers, %s embedding\n", o.out.c_str(), describe(c).c_str(), o.type.c_str(),
                std::string(dtype_name(*opt.embd_type)).c_str());
  });
}

}  // namespace bitnet::cli
