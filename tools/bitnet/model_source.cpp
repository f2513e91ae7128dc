#include "model_source.h"

#include "core/error.h"
#include "inference/synthetic.h"

namespace bitnet::cli {

void add_model_options(CLI::App* cmd, ModelSource& src) {
  cmd->add_option("--synthetic", src.synthetic,
                  "use a random model generated in memory: 2b4t (BitNet b1.58 2B4T shape) or tiny")
      ->check(CLI::IsMember({"2b4t", "tiny"}));
  cmd->add_option("--embd-type", src.embd_type, "synthetic model's embedding/head type")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  cmd->add_option("--seed-model", src.seed, "synthetic model's random seed");
}

std::unique_ptr<Model> load_model(const ModelSource& src) {
  if (src.synthetic.empty()) fail("no model: pass --synthetic 2b4t|tiny (model files are not supported yet)");
  ModelConfig c = config_2b4t();
  if (src.synthetic == "tiny") {
    c.n_vocab = 2048;
    c.n_embd = 256;
    c.n_layer = 4;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.head_dim = 64;
    c.rope_dim = 64;
    c.n_ff = 768;
  }
  return std::make_unique<Model>(make_synthetic_model(c, src.seed, *dtype_from_name(src.embd_type)));
}

std::string model_label(const ModelSource& src) {
  return "synthetic " + src.synthetic + " (" + src.embd_type + " head)";
}

}  // namespace bitnet::cli
