// A strict reader of the Prometheus text exposition format 0.0.4, for tests
// that scrape /metrics: every line must be a `# HELP`, a `# TYPE` or a sample;
// each family has one HELP and one TYPE, both before its samples, and its
// samples are contiguous; metric and label names match the format's grammar;
// label values are quoted with only \\, \" and \n escapes; no duplicate
// series; values are floats; counters end in _total; histograms have
// ascending `le` buckets with non-decreasing counts, a +Inf bucket equal to
// _count, and a _sum.
//
// Thread-safety: pure functions.
#ifndef SEALPOST_TESTS_SUPPORT_PROMETHEUS_TEXT_H_
#define SEALPOST_TESTS_SUPPORT_PROMETHEUS_TEXT_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sealpost::testing {

struct PromSample {
  std::string name;                           // full sample name (with _bucket etc.)
  std::map<std::string, std::string> labels;  // unescaped values
  double value = 0;
};

struct PromExposition {
  std::vector<PromSample> samples;
  std::map<std::string, std::string> types;  // family -> counter/gauge/histogram/...
  std::map<std::string, std::string> help;   // family -> text

  // The value of the sample `name` whose labels include all of `labels`;
  // nullopt when none matches (the first match when several do).
  std::optional<double> Value(const std::string& name,
                              const std::map<std::string, std::string>& labels = {}) const;
  // The sum over every sample `name` whose labels include `labels`.
  double Sum(const std::string& name, const std::map<std::string, std::string>& labels = {}) const;
};

// Parses `text`; on any violation returns nullopt and sets *error to
// "line N: what".
std::optional<PromExposition> ParsePrometheusText(const std::string& text, std::string* error);

}  // namespace sealpost::testing

#endif  // SEALPOST_TESTS_SUPPORT_PROMETHEUS_TEXT_H_
