// `bitnet`: one binary, one subcommand per job. User errors (bitnet::Error) print one line and
// exit 1; programmer errors abort inside BN_CHECK.
#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include "commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"bitnet: run, convert, serve and train ternary (BitNet b1.58) language models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "bitnet 0.1.0");
  bitnet::cli::register_info(app);
  bitnet::cli::register_selftest(app);
  bitnet::cli::register_run(app);
  bitnet::cli::register_chat(app);
  bitnet::cli::register_serve(app);
  bitnet::cli::register_perplexity(app);
  bitnet::cli::register_bench(app);
  bitnet::cli::register_synth(app);
  bitnet::cli::register_convert(app);
  bitnet::cli::register_tokenize(app);
  bitnet::cli::register_detokenize(app);
  bitnet::cli::register_inspect(app);
  bitnet::cli::register_train(app);
  bitnet::cli::register_train_tokenizer(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 answers a mistyped command with "A subcommand is required": name it and the commands.
    std::string names;
    bool known = false;
    for (const CLI::App* c : app.get_subcommands([](const CLI::App*) { return true; })) {
      names += (names.empty() ? "" : ", ") + c->get_name();
      known = known || (argc > 1 && c->get_name() == argv[1]);
    }
    if (argc > 1 && argv[1][0] != '-' && !known) {
      std::fprintf(stderr, "bitnet: error: no command '%s' (the commands: %s; bitnet CMD --help for one)\n",
                   argv[1], names.c_str());
      return 1;
    }
    return app.exit(e);
  } catch (const bitnet::Error& e) {
    std::fprintf(stderr, "bitnet: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr,
                 "bitnet: error: out of memory (a context, batch or model too large for this machine?)\n");
    return 1;
  } catch (const std::exception& e) {  // the standard library's (a file system call, a thread)
    std::fprintf(stderr, "bitnet: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
