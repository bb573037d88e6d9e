"""Compiler options shared by every project target, and thin macros that apply them."""

load("@rules_cc//cc:defs.bzl", "cc_binary", "cc_library", "cc_test")

# C++20 itself is set for all targets in .bazelrc; these are the project's own
# warnings, which third-party code does not have to meet.
CKPT_COPTS = [
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wno-missing-field-initializers",
    "-fno-strict-aliasing",
]

def ckpt_cc_library(name, copts = [], **kwargs):
    cc_library(name = name, copts = CKPT_COPTS + copts, **kwargs)

# Executables and tests link Abseil statically unless absl_link = "shared"
# (libckpt.so). See //third_party:absl.
def _absl_link(kind):
    if kind == "none":
        return []
    return ["//third_party:absl_%s_link" % kind]

def ckpt_cc_binary(name, copts = [], deps = [], absl_link = "static", **kwargs):
    cc_binary(name = name, copts = CKPT_COPTS + copts, deps = deps + _absl_link(absl_link), **kwargs)

def ckpt_cc_test(name, copts = [], deps = [], absl_link = "static", **kwargs):
    cc_test(name = name, copts = CKPT_COPTS + copts, deps = deps + _absl_link(absl_link), **kwargs)
