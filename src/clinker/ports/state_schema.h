// The columns of each table, shared by every StateStore adapter so they accept the same rows.
// A column missing here does not exist: adapters refuse it with kInvalidArgument, which also
// keeps caller-supplied names (sort keys, filters) out of SQL text.
//
// Changing a table means a new schema migration in every adapter and a new entry here.
#pragma once

#include <span>
#include <string_view>

#include "clinker/ports/state_store.h"

namespace clinker::ports {

enum class ColumnType { kText, kInteger };

struct ColumnSpec {
  std::string_view name;
  ColumnType type;
  bool nullable;
  // Used by Insert when the row does not carry the column; only for non-nullable columns.
  // kText defaults are text, kInteger defaults are decimal integers.
  std::string_view default_value;
};

std::string_view TableName(Table table);

std::span<const ColumnSpec> Columns(Table table);

// Columns no two live (deleted = 0) rows of the table may share a non-NULL value in (a volume
// type's name). Every adapter enforces them atomically with the write: an Insert or a
// ConditionalUpdate that would break one fails with kConflict and changes nothing (SQL engines
// through a partial unique index "WHERE deleted = 0").
std::span<const std::string_view> LiveUniqueColumns(Table table);

// nullptr if the table has no such column.
const ColumnSpec* FindColumn(Table table, std::string_view column);

// kInvalidArgument unless the column exists and the value fits it (NULL only where nullable).
Result<void> CheckValue(Table table, std::string_view column, const Value& value);

// The checks every StateStore adapter makes before touching its engine, shared so that all
// adapters refuse exactly the same calls (the contract tests hold them to it).

// The column's spec, or kInvalidArgument naming the table and column.
Result<const ColumnSpec*> RequireColumn(Table table, std::string_view column);

// kInvalidArgument for an unknown column, a wrong value count for the kind (one for kEquals /
// kNotEquals, none for the null kinds), a NULL value (use kIsNull / kIsNotNull) or a value of
// the wrong type.
Result<void> CheckExpectation(Table table, const Expectation& expectation);

// kInvalidArgument for a guard on an unknown column, or with a `where` expectation that
// CheckExpectation refuses or of kind kNullOrAtMost.
Result<void> CheckGuard(const Guard& guard);

// The row as stored: every column of the table, from `row`, else NULL where nullable, else the
// column's default. kInvalidArgument for an unknown column, a bad value, an empty or missing
// id, or a missing required column without a default.
Result<Row> CompleteRow(Table table, const Row& row);

// kInvalidArgument for an unknown column, a bad value, or an attempt to change `id`.
Result<void> CheckUpdateValues(Table table, const Row& values);

// kInvalidArgument for a usage change with an empty resource, or an empty project for a quota
// counter.
Result<void> CheckUsageChanges(const std::vector<UsageChange>& usage);

// Where a usage change's counter is stored: its table, its row id, the integer column counted,
// and the row to insert (all other columns at their defaults) when the counter does not exist.
struct UsageCounter {
  Table table = Table::kQuotaUsages;
  std::string id;
  std::string_view column;
  Row fresh_row;
};

UsageCounter CounterOf(const UsageChange& change);

}  // namespace clinker::ports
