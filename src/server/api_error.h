#pragma once
// An error the API answers with: an HTTP status and OpenAI's error object
// {"error": {"message", "type", "param", "code"}}.
#include <stdexcept>
#include <string>

namespace bitnet::server {

struct ApiError : std::runtime_error {
  ApiError(int status, std::string message, std::string param = {}, std::string type = {})
      : std::runtime_error(message), status(status), param(std::move(param)), type(std::move(type)) {
    if (this->type.empty()) this->type = default_type(status);
  }
  int status;
  std::string param;  // the request field at fault, or empty
  std::string type;   // invalid_request_error, authentication_error, ...

  static std::string default_type(int status) {
    if (status == 401) return "authentication_error";
    if (status == 404) return "not_found_error";
    if (status == 429) return "rate_limit_error";
    if (status >= 500) return "server_error";
    return "invalid_request_error";
  }
};

}  // namespace bitnet::server
