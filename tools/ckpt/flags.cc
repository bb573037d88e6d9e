#include "tools/ckpt/flags.h"

#include "absl/strings/str_cat.h"

namespace ckpt::cli {

absl::StatusOr<Flags> ParseFlags(const std::vector<std::string>& args, const FlagSpec& spec) {
  Flags flags;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (spec.switches.count(name)) {
      if (has_value) return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
      flags.switches.insert(name);
    } else if (spec.values.count(name)) {
      if (!has_value) {
        if (i + 1 >= args.size()) {
          return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
        }
        value = args[++i];
      }
      if (value.empty()) return absl::InvalidArgumentError(absl::StrCat("--", name, " is empty"));
      if (flags.values.count(name) && !spec.repeated.count(name)) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " is given twice"));
      }
      flags.values[name] = value;
      flags.lists[name].push_back(value);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
  }
  for (const std::string& name : spec.required) {
    if (!flags.values.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " is required"));
    }
  }
  return flags;
}

}  // namespace ckpt::cli
