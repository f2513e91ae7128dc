// parse_request: the fields it takes, and a clear 400 naming the field for each bad one.
#include <gtest/gtest.h>

#include "server/request.h"

namespace bitnet::server {
namespace {

RequestLimits limits() {
  RequestLimits l;
  l.n_ctx = 512;
  l.n_vocab = 1000;
  return l;
}

GenerationRequest chat(const std::string& body) {
  return parse_request(Endpoint::kChat, body, limits());
}
GenerationRequest completion(const std::string& body) {
  return parse_request(Endpoint::kCompletions, body, limits());
}

TEST(Request, ChatFields) {
  GenerationRequest r = chat(R"({"model":"m","messages":[{"role":"developer","content":"be brief"},
    {"role":"user","content":[{"type":"text","text":"Hi "},{"type":"text","text":"there"}]}],
    "max_tokens":7,"temperature":0.5,"top_p":0.9,"top_k":5,"min_p":0.1,"seed":-3,"stop":["a","b"],
    "stream":true,"stream_options":{"include_usage":true},"logprobs":true,"top_logprobs":3,"n":1})");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "Hi there");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 5);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
  EXPECT_TRUE(r.seed_given);
  EXPECT_EQ(r.sampling.seed, static_cast<uint64_t>(-3));
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.top_logprobs, 3);
}

TEST(Request, CompletionPromptForms) {
  EXPECT_EQ(completion(R"({"prompt":"abc"})").prompt, "abc");
  EXPECT_EQ(completion(R"({"prompt":["abc"]})").prompt, "abc");
  GenerationRequest ids = completion(R"({"prompt":[1,2,999],"logprobs":2,"max_tokens":null})");
  EXPECT_TRUE(ids.prompt_is_ids);
  EXPECT_EQ(ids.prompt_ids, (std::vector<int32_t>{1, 2, 999}));
  EXPECT_EQ(ids.top_logprobs, 2);
  EXPECT_EQ(ids.max_tokens, -1);
  EXPECT_EQ(completion(R"({"prompt":[[5,6]]})").prompt_ids, (std::vector<int32_t>{5, 6}));
}

TEST(Request, DefaultsComeFromTheServer) {
  RequestLimits l = limits();
  l.sampling.temperature = 0.25f;
  l.default_max_tokens = 33;
  GenerationRequest r = parse_request(Endpoint::kCompletions, R"({"prompt":"x"})", l);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.25f);
  EXPECT_EQ(r.max_tokens, 33);
  EXPECT_FALSE(r.seed_given);
  EXPECT_EQ(r.top_logprobs, -1);
}

struct Bad {
  Endpoint ep;
  const char* body;
  const char* says;  // a part of the message
  friend void PrintTo(const Bad& b, std::ostream* os) { *os << b.body; }
};

class BadRequest : public ::testing::TestWithParam<Bad> {};

TEST_P(BadRequest, Is400NamingTheProblem) {
  const Bad& b = GetParam();
  try {
    parse_request(b.ep, b.body, limits());
    FAIL() << "accepted: " << b.body;
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.type, "invalid_request_error");
    EXPECT_NE(std::string(e.what()).find(b.says), std::string::npos) << e.what();
  }
}

constexpr Endpoint C = Endpoint::kChat, P = Endpoint::kCompletions;
INSTANTIATE_TEST_SUITE_P(
    Server, BadRequest,
    ::testing::Values(
        Bad{C, "", "empty"}, Bad{C, "{", "not valid JSON"},
        Bad{C, "[]", "must be a JSON object, not an array"}, Bad{C, "\"hi\"", "not a string"},
        Bad{C, "{}", "'messages' is required"}, Bad{C, R"({"messages":{}})", "'messages' must be an array"},
        Bad{C, R"({"messages":[]})", "at least one"},
        Bad{C, R"({"messages":[1]})", "'messages[0]' must be an object"},
        Bad{C, R"({"messages":[{"content":"x"}]})", "'messages[0].role' is required"},
        Bad{C, R"({"messages":[{"role":"tool","content":"x"}]})", "is not one of"},
        Bad{C, R"({"messages":[{"role":"user"}]})", "'messages[0].content' is required"},
        Bad{C, R"({"messages":[{"role":"user","content":5}]})", "must be a string or an array"},
        Bad{C, R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})", "only \"text\""},
        Bad{C, R"({"messages":[{"role":"user","content":"x","tool_calls":[]}]})", "is not supported"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"max_tokens":0})",
            "'max_tokens' = 0 is outside"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"max_tokens":513})", "outside [1, 512]"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"max_tokens":"5"})", "must be an integer"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"max_tokens":1.5})", "must be an integer"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"temperature":-1})", "'temperature'"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"temperature":"hot"})", "must be a number"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"top_p":1.5})", "'top_p'"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"top_k":-1})", "'top_k'"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"min_p":2})", "'min_p'"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"seed":"1"})", "'seed' must be an integer"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"stop":5})",
            "'stop' must be a string or an array"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]})", "at most 4"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"stop":[""]})", "empty string"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"stream":"yes"})",
            "'stream' must be a boolean"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}})",
            "only allowed with 'stream': true"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"n":2})", "'n' = 2 is outside [1, 1]"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})", "needs 'logprobs': true"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":21})",
            "'top_logprobs'"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"logprobs":1})",
            "'logprobs' must be a boolean"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"frequency_penalty":1})", "not supported"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"logit_bias":{"1":5}})", "'logit_bias'"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"tools":[]})",
            "unrecognized request argument 'tools'"},
        Bad{C, R"({"messages":[{"role":"user","content":"x"}],"model":7})", "'model' must be a string"},
        Bad{P, R"({"prompt":"x","messages":[]})", "unrecognized request argument 'messages'"},
        Bad{P, "{}", "'prompt' is required"}, Bad{P, R"({"prompt":5})", "must be a string or an array"},
        Bad{P, R"({"prompt":[]})", "empty array"}, Bad{P, R"({"prompt":["a","b"]})", "holds 2 prompts"},
        Bad{P, R"({"prompt":[1,1000]})", "not a token id in [0, 1000)"},
        Bad{P, R"({"prompt":[1,-1]})", "not a token id"}, Bad{P, R"({"prompt":[1,"a"]})", "not a token id"},
        Bad{P, R"({"prompt":"x","logprobs":6})", "'logprobs'"},
        Bad{P, R"({"prompt":"x","logprobs":true})", "'logprobs' must be an integer"},
        Bad{P, R"({"prompt":"x","echo":true})", "'echo'"},
        Bad{P, R"({"prompt":"x","suffix":"y"})", "'suffix'"},
        Bad{P, R"({"prompt":"x","best_of":3})", "best_of"},
        Bad{P, R"({"prompt":"x","max_completion_tokens":3})", "unrecognized"},
        Bad{P, "{\"prompt\":\"\xff\"}", "not valid JSON"},
        Bad{P, R"({"prompt":"x","seed":9223372036854775808.0})", "'seed'"},
        Bad{P, R"({"prompt":"x","seed":18446744073709551615})", "'seed'"}));

}  // namespace
}  // namespace bitnet::server
