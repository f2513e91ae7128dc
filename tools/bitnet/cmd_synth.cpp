// `bitnet synth`: writes a synthetic model (random ternary weights, meaningless text) of a given
// shape as GGUF, in any ternary type the engine reads. Benchmarks use the 2B4T shape.
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "model/synthetic_gguf.h"
#include "option_checks.h"
#include "quant/type_traits.h"

namespace bitnet::cli {

void register_synth(CLI::App& app) {
  auto* cmd = app.add_subcommand("synth", "Write a synthetic model (random ternary weights) as GGUF");
  struct Opts {
    std::string out, shape = "tiny", type = "i2_s", embd = "f16", arch = "bitnet-b1.58";
    uint64_t seed = 1;
  };
  static Opts o;
  cmd->add_option("-o,--output", o.out, "output GGUF file")->required();
  cmd->add_option("--shape", o.shape, "2b4t (hidden 2560, 30 layers, vocab 128256) or tiny")
      ->check(CLI::IsMember({"2b4t", "tiny"}));
  cmd->add_option("--type", o.type, "ternary layer type")
      ->check(CLI::IsMember(type_names(&TypeTraits::pack)));
  cmd->add_option("--embd-type", o.embd, "embedding / tied head type")
      ->check(CLI::IsMember(type_names(&TypeTraits::quantize)));
  cmd->add_option("--arch", o.arch, "architecture name written to the file")
      ->check(CLI::IsMember({"bitnet-b1.58", "bitnet"}));
  cmd->add_option("--seed", o.seed, "random seed")->check(seed_value());
  cmd->callback([] {
    ModelConfig c = synthetic_config(o.shape);
    c.arch = o.arch;
    GgufWriter w = synthetic_gguf(c, *dtype_from_name(o.type), *dtype_from_name(o.embd), o.seed);
    w.write(o.out);
    std::printf("wrote %s: %s, %s layers, %s embedding\n", o.out.c_str(), describe(c).c_str(), o.type.c_str(),
                o.embd.c_str());
  });
}

}  // namespace bitnet::cli
