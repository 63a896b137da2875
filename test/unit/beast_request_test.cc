// The conversion of a parsed request into ports::HttpRequest (adapters/http/beast_request.h):
// target splitting and decoding, headers, body and base URL.
#include "clinker/adapters/http/beast_request.h"

#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace clinker::adapters {
namespace {

namespace http = boost::beast::http;

ports::HttpRequest Convert(const std::string& target,
                           const std::string& host = "",
                           std::string body = "") {
  http::request<http::string_body> message;
  message.method(http::verb::post);
  message.target(target);
  message.version(11);
  if (!host.empty()) {
    message.set(http::field::host, host);
  }
  message.body() = std::move(body);
  return ToHttpRequest(message, "http://127.0.0.1:8776");
}

using Pairs = std::vector<std::pair<std::string, std::string>>;

TEST(BeastRequestTest, SplitsAndDecodesPathAndQuery) {
  ports::HttpRequest request =
      Convert("/v3/p/volumes%2Fx+y?name=a+b&&metadata=%7B%22k%22%3A1%7D&flag&=v&k=");
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.path, "/v3/p/volumes/x+y");  // '+' is itself in a path.
  EXPECT_EQ(
      request.query,
      (Pairs{{"name", "a b"}, {"metadata", "{\"k\":1}"}, {"flag", ""}, {"", "v"}, {"k", ""}}));
}

TEST(BeastRequestTest, KeepsPercentSignsThatAreNotEscapes) {
  EXPECT_EQ(PercentDecode("%", true), "%");
  EXPECT_EQ(PercentDecode("a%4", true), "a%4");
  EXPECT_EQ(PercentDecode("%zz%41", false), "%zzA");
  EXPECT_EQ(PercentDecode("%41", false), "A");  // An escape that ends the text.
  EXPECT_EQ(PercentDecode("%00", false), std::string(1, '\0'));
}

TEST(BeastRequestTest, AbsoluteFormKeepsPathAndQuery) {
  EXPECT_EQ(Convert("http://example.com:8776/v3/volumes?x=1").path, "/v3/volumes");
  EXPECT_EQ(Convert("https://example.com").path, "/");
}

TEST(BeastRequestTest, LinksUseTheHostHeaderElseTheDefault) {
  EXPECT_EQ(Convert("/", "clinker.test:8776").base_url, "http://clinker.test:8776");
  EXPECT_EQ(Convert("/").base_url, "http://127.0.0.1:8776");
}

TEST(BeastRequestTest, MovesBodyAndHeaders) {
  ports::HttpRequest request = Convert("/v3", "h", "{\"a\":1}");
  EXPECT_EQ(request.body, "{\"a\":1}");
  EXPECT_EQ(request.Header("host"), "h");
}

}  // namespace
}  // namespace clinker::adapters
