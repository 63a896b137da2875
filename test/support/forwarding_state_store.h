// ForwardingStateStore: a StateStore that passes every call to another one. Test decorators
// (hooks that run at a chosen write, counters of writes) derive from it and override only what
// they watch, so a new method of the port needs no change in each of them. The plain Insert and
// ConditionalUpdate go through the WithUsage forms, so overriding those sees every write.
//
// Thread safety and errors are the inner store's.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "clinker/ports/state_store.h"

namespace clinker::test_support {

class ForwardingStateStore : public ports::StateStore {
 public:
  explicit ForwardingStateStore(ports::StateStore& inner) : inner_(inner) {}

  Result<void> Insert(ports::Table table, const ports::Row& row) override {
    return InsertWithUsage(table, row, {});
  }

  Result<void> InsertWithUsage(ports::Table table,
                               const ports::Row& row,
                               const std::vector<ports::UsageChange>& usage) override {
    return inner_.InsertWithUsage(table, row, usage);
  }

  Result<ports::Row> Get(ports::Table table, std::string_view id) override {
    return inner_.Get(table, id);
  }

  Result<std::vector<ports::Row>> List(ports::Table table, const ports::ListQuery& query) override {
    return inner_.List(table, query);
  }

  Result<std::optional<ports::Row>> ConditionalUpdate(
      ports::Table table,
      std::string_view id,
      const ports::Row& values,
      const std::vector<ports::Expectation>& expected,
      const std::vector<ports::Guard>& guards) override {
    return ConditionalUpdateWithUsage(table, id, values, expected, guards, {});
  }

  Result<std::optional<ports::Row>> ConditionalUpdateWithUsage(
      ports::Table table,
      std::string_view id,
      const ports::Row& values,
      const std::vector<ports::Expectation>& expected,
      const std::vector<ports::Guard>& guards,
      const std::vector<ports::UsageChange>& usage) override {
    return inner_.ConditionalUpdateWithUsage(table, id, values, expected, guards, usage);
  }

 protected:
  ports::StateStore& inner() { return inner_; }

 private:
  ports::StateStore& inner_;
};

}  // namespace clinker::test_support
