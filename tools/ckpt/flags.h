// The CLI's flag parser: `--name value`, `--name=value` and bare switches,
// checked against the flags a command accepts.

#ifndef LIBCKPT_TOOLS_CKPT_FLAGS_H_
#define LIBCKPT_TOOLS_CKPT_FLAGS_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ckpt::cli {

struct FlagSpec {
  std::set<std::string> values;    // flags that take a value
  std::set<std::string> switches;  // flags that do not
  std::set<std::string> required;  // value flags that must be given
  std::set<std::string> repeated;  // value flags that may be given more than once
};

struct Flags {
  std::map<std::string, std::string> values;  // the last value of each
  std::map<std::string, std::vector<std::string>> lists;  // every value, in order
  std::set<std::string> switches;

  bool Has(const std::string& name) const { return switches.count(name) != 0; }
  std::string Get(const std::string& name) const {
    auto it = values.find(name);
    return it == values.end() ? "" : it->second;
  }
  std::vector<std::string> All(const std::string& name) const {
    auto it = lists.find(name);
    return it == lists.end() ? std::vector<std::string>{} : it->second;
  }
};

// args excludes the program and command names.
absl::StatusOr<Flags> ParseFlags(const std::vector<std::string>& args, const FlagSpec& spec);

}  // namespace ckpt::cli

#endif  // LIBCKPT_TOOLS_CKPT_FLAGS_H_
