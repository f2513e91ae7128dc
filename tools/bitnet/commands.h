#pragma once
// Each subcommand lives in its own cmd_<name>.cpp and registers itself on the CLI11 app.
#include <CLI/CLI.hpp>

namespace bitnet::cli {

void register_info(CLI::App& app);
void register_selftest(CLI::App& app);
void register_bench(CLI::App& app);
void register_synth(CLI::App& app);
void register_convert(CLI::App& app);
void register_run(CLI::App& app);
void register_chat(CLI::App& app);
void register_serve(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_detokenize(CLI::App& app);
void register_inspect(CLI::App& app);
void register_train(CLI::App& app);
void register_train_tokenizer(CLI::App& app);

}  // namespace bitnet::cli
