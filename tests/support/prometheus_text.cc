#include "tests/support/prometheus_text.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>

namespace sealpost::testing {
namespace {

bool IsNameStart(char c, bool colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
}
bool IsNameChar(char c, bool colon) { return IsNameStart(c, colon) || (c >= '0' && c <= '9'); }

bool ValidName(const std::string& s, bool colon) {
  if (s.empty() || !IsNameStart(s[0], colon)) return false;
  for (char c : s) {
    if (!IsNameChar(c, colon)) return false;
  }
  return true;
}

bool ParseValue(const std::string& s, double* v) {
  if (s == "+Inf" || s == "Inf") {
    *v = HUGE_VAL;
    return true;
  }
  if (s == "-Inf") {
    *v = -HUGE_VAL;
    return true;
  }
  if (s == "NaN") {
    *v = std::nan("");
    return true;
  }
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  *v = std::strtod(s.c_str(), &end);
  return errno == 0 && end == s.c_str() + s.size() && std::isfinite(*v);
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool Includes(const std::map<std::string, std::string>& have,
              const std::map<std::string, std::string>& want) {
  for (const auto& [k, v] : want) {
    auto it = have.find(k);
    if (it == have.end() || it->second != v) return false;
  }
  return true;
}

}  // namespace

std::optional<double> PromExposition::Value(const std::string& name,
                                            const std::map<std::string, std::string>& labels) const {
  for (const PromSample& s : samples) {
    if (s.name == name && Includes(s.labels, labels)) return s.value;
  }
  return std::nullopt;
}

double PromExposition::Sum(const std::string& name,
                           const std::map<std::string, std::string>& labels) const {
  double sum = 0;
  for (const PromSample& s : samples) {
    if (s.name == name && Includes(s.labels, labels)) sum += s.value;
  }
  return sum;
}

std::optional<PromExposition> ParsePrometheusText(const std::string& text, std::string* error) {
  PromExposition out;
  std::set<std::string> finished;  // families whose samples are over
  std::string current;             // family of the previous sample
  std::set<std::string> series;    // name + labels, for duplicates
  int line_no = 0;
  auto fail = [&](const std::string& what) {
    if (error != nullptr) *error = "line " + std::to_string(line_no) + ": " + what;
    return std::nullopt;
  };
  if (!text.empty() && text.back() != '\n') {
    line_no = 0;
    return fail("the exposition does not end with a newline");
  }
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) return fail("empty line");
    if (line[0] == '#') {
      std::istringstream ls(line);
      std::string hash, kind, name;
      ls >> hash >> kind >> name;
      if (hash != "#" || (kind != "HELP" && kind != "TYPE")) return fail("unknown comment: " + line);
      if (!ValidName(name, true)) return fail("bad metric name '" + name + "'");
      std::string rest;
      std::getline(ls, rest);
      if (!rest.empty() && rest[0] == ' ') rest.erase(0, 1);
      if (finished.count(name) != 0 || (current == name)) {
        return fail(kind + " of '" + name + "' after its samples");
      }
      if (kind == "HELP") {
        if (out.help.count(name) != 0) return fail("second HELP for '" + name + "'");
        if (rest.empty()) return fail("empty HELP for '" + name + "'");
        out.help[name] = rest;
      } else {
        if (out.types.count(name) != 0) return fail("second TYPE for '" + name + "'");
        static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary",
                                                     "untyped"};
        if (kTypes.count(rest) == 0) return fail("unknown TYPE '" + rest + "'");
        if (rest == "counter" && !EndsWith(name, "_total")) {
          return fail("counter '" + name + "' does not end in _total");
        }
        out.types[name] = rest;
      }
      continue;
    }
    // A sample: name[{labels}] value
    PromSample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (!ValidName(s.name, true)) return fail("bad sample name '" + s.name + "'");
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (true) {
        if (i < line.size() && line[i] == '}') {
          ++i;
          break;
        }
        size_t start = i;
        while (i < line.size() && line[i] != '=') ++i;
        std::string lname = line.substr(start, i - start);
        if (!ValidName(lname, false) || lname.rfind("__", 0) == 0) {
          return fail("bad label name '" + lname + "'");
        }
        if (i + 1 >= line.size() || line[i + 1] != '"') return fail("label value not quoted");
        i += 2;
        std::string value;
        bool closed = false;
        while (i < line.size()) {
          char c = line[i++];
          if (c == '\\') {
            if (i >= line.size()) return fail("dangling escape");
            char e = line[i++];
            if (e == '\\') value += '\\';
            else if (e == '"') value += '"';
            else if (e == 'n') value += '\n';
            else return fail(std::string("bad escape \\") + e);
          } else if (c == '"') {
            closed = true;
            break;
          } else {
            value += c;
          }
        }
        if (!closed) return fail("unterminated label value");
        if (s.labels.count(lname) != 0) return fail("duplicate label '" + lname + "'");
        s.labels[lname] = value;
        if (i < line.size() && line[i] == ',') {
          ++i;
          continue;
        }
        if (i < line.size() && line[i] == '}') {
          ++i;
          break;
        }
        return fail("expected , or } after a label");
      }
    }
    if (i >= line.size() || line[i] != ' ') return fail("no value");
    std::string rest = line.substr(i + 1);
    std::string value_text = rest.substr(0, rest.find(' '));
    if (rest.find(' ') != std::string::npos) {
      std::string ts = rest.substr(rest.find(' ') + 1);
      char* end = nullptr;
      std::strtoll(ts.c_str(), &end, 10);
      if (ts.empty() || end != ts.c_str() + ts.size()) return fail("bad timestamp '" + ts + "'");
    }
    if (!ParseValue(value_text, &s.value)) return fail("bad value '" + value_text + "'");
    // Its family: the name itself, or a histogram's/summary's part.
    std::string family = s.name;
    if (out.types.count(family) == 0) {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        if (EndsWith(s.name, suffix)) {
          std::string base = s.name.substr(0, s.name.size() - std::string(suffix).size());
          auto t = out.types.find(base);
          if (t != out.types.end() && (t->second == "histogram" || t->second == "summary")) {
            family = base;
          }
        }
      }
    }
    if (out.types.count(family) == 0) return fail("sample '" + s.name + "' without a TYPE before it");
    if (out.help.count(family) == 0) return fail("sample '" + s.name + "' without a HELP before it");
    if (out.types[family] == "histogram" && family == s.name) {
      return fail("histogram sample '" + s.name + "' without _bucket/_sum/_count");
    }
    if (out.types[family] == "histogram" && EndsWith(s.name, "_bucket")) {
      if (s.labels.count("le") == 0) return fail("bucket without le");
      double le = 0;
      if (!ParseValue(s.labels["le"], &le)) return fail("bad le '" + s.labels["le"] + "'");
    }
    if (out.types[family] == "counter" && s.value < 0) return fail("negative counter");
    if (family != current) {
      if (finished.count(family) != 0) return fail("samples of '" + family + "' are not contiguous");
      if (!current.empty()) finished.insert(current);
      current = family;
    }
    std::string key = s.name + "{";
    for (const auto& [k, v] : s.labels) key += k + "=" + v + ",";
    if (!series.insert(key).second) return fail("duplicate series " + key + "}");
    out.samples.push_back(std::move(s));
  }
  // Histograms: per label set (without le) ascending buckets, counts
  // non-decreasing, +Inf == _count, a _sum.
  for (const auto& [family, type] : out.types) {
    if (type != "histogram") continue;
    std::map<std::map<std::string, std::string>, std::vector<std::pair<double, double>>> buckets;
    for (const PromSample& s : out.samples) {
      if (s.name != family + "_bucket") continue;
      auto labels = s.labels;
      double le = 0;
      ParseValue(labels["le"], &le);
      labels.erase("le");
      buckets[labels].emplace_back(le, s.value);
    }
    for (const auto& [labels, bs] : buckets) {
      line_no = 0;
      for (size_t k = 1; k < bs.size(); ++k) {
        if (!(bs[k].first > bs[k - 1].first)) return fail(family + ": buckets not ascending");
        if (bs[k].second < bs[k - 1].second) return fail(family + ": bucket counts decrease");
      }
      if (bs.empty() || !std::isinf(bs.back().first)) return fail(family + ": no +Inf bucket");
      auto count = out.Value(family + "_count", labels);
      auto sum = out.Value(family + "_sum", labels);
      if (!count || !sum) return fail(family + ": _count or _sum missing");
      if (*count != bs.back().second) return fail(family + ": +Inf bucket != _count");
    }
  }
  return out;
}

}  // namespace sealpost::testing
