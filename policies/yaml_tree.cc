#include "policies/yaml_tree.h"

#include <yaml.h>

#include <memory>
#include <unordered_map>
#include <utility>

namespace sealpost::policies {
namespace {

// libyaml's parser and event are C structs with their own free functions;
// each is owned by one of these from the line that initialises it.
class Parser {
 public:
  Parser() { ok_ = yaml_parser_initialize(&parser_) == 1; }
  ~Parser() {
    if (ok_) yaml_parser_delete(&parser_);
  }
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;
  bool ok() const { return ok_; }
  yaml_parser_t* get() { return &parser_; }

 private:
  yaml_parser_t parser_{};
  bool ok_ = false;
};

class Event {
 public:
  Event() = default;
  ~Event() { Reset(); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  // Parses the next event into this one. False on a parser error.
  bool Next(yaml_parser_t* parser) {
    Reset();
    if (yaml_parser_parse(parser, &event_) != 1) return false;
    live_ = true;
    return true;
  }
  const yaml_event_t& operator*() const { return event_; }
  const yaml_event_t* operator->() const { return &event_; }

 private:
  void Reset() {
    if (live_) yaml_event_delete(&event_);
    live_ = false;
  }
  yaml_event_t event_{};
  bool live_ = false;
};

Mark ToMark(const yaml_mark_t& m) {
  return Mark{static_cast<int>(m.line) + 1, static_cast<int>(m.column) + 1};
}

// Line and column (characters) of a byte offset, for reader errors, which
// libyaml reports by offset only.
Mark MarkOfOffset(std::string_view text, size_t offset) {
  Mark m{1, 1};
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      ++m.line;
      m.column = 1;
    } else if ((c & 0xC0) != 0x80) {
      ++m.column;
    }
  }
  return m;
}

const char* CStr(const yaml_char_t* s) { return reinterpret_cast<const char*>(s); }

class TreeBuilder {
 public:
  TreeBuilder(const std::string& file, std::vector<Diagnostic>* errors, const YamlLimits& limits)
      : file_(file), errors_(errors), limits_(limits) {}

  void Error(Mark m, std::string message) {
    errors_->push_back(Diagnostic{file_, m.line, m.column, std::move(message)});
  }

  // Returns false when parsing must stop (a limit was hit).
  bool CountNode(Mark m) {
    if (++nodes_ > limits_.max_nodes) {
      Error(m, "too many YAML nodes (limit " + std::to_string(limits_.max_nodes) + ")");
      return false;
    }
    return true;
  }

  bool Open(YamlNode::Kind kind, Mark m, const yaml_char_t* anchor, const yaml_char_t* tag) {
    if (!CountNode(m)) return false;
    if (stack_.size() >= limits_.max_depth) {
      Error(m, "nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
      return false;
    }
    Frame f;
    f.node.kind = kind;
    f.node.mark = m;
    CheckAnchorAndTag(&f.node, anchor, tag);
    stack_.push_back(std::move(f));
    return true;
  }

  void Close() {
    YamlNode done = std::move(stack_.back().node);
    stack_.pop_back();
    Attach(std::move(done));
  }

  void Scalar(YamlNode node, const yaml_char_t* anchor, const yaml_char_t* tag) {
    CheckAnchorAndTag(&node, anchor, tag);
    if (node.value.size() > limits_.max_scalar_bytes) {
      Error(node.mark, "scalar longer than " + std::to_string(limits_.max_scalar_bytes) + " bytes");
      node.value.clear();
      node.reported = true;
    }
    Attach(std::move(node));
  }

  void Alias(Mark m, const yaml_char_t* anchor) {
    Error(m, std::string("aliases (*") + (anchor ? CStr(anchor) : "") +
                 ") are not allowed in policy files; write the value out");
    YamlNode node;
    node.mark = m;
    node.reported = true;
    Attach(std::move(node));
  }

  std::optional<YamlNode>& root() { return root_; }

 private:
  struct Frame {
    YamlNode node;
    bool has_key = false;
    bool drop_value = false;  // the key was refused: drop what follows it
    std::string key;
    Mark key_mark;
    // Keys of `node.entries` with their positions, built only once a mapping
    // grows past kLinearKeys entries: small mappings (nearly all) are scanned,
    // a hostile 100,000-key mapping still costs O(1) per key.
    std::unique_ptr<std::unordered_map<std::string, Mark>> index;
  };

  void CheckAnchorAndTag(YamlNode* node, const yaml_char_t* anchor, const yaml_char_t* tag) {
    if (anchor != nullptr) {
      Error(node->mark, std::string("anchors (&") + CStr(anchor) +
                            ") are not allowed in policy files; write the value out");
    }
    if (tag != nullptr) {
      Error(node->mark, std::string("explicit tags (") + CStr(tag) +
                            ") are not allowed in policy files");
      node->reported = true;
    }
  }

  void Attach(YamlNode node) {
    if (stack_.empty()) {
      root_ = std::move(node);
      return;
    }
    Frame& parent = stack_.back();
    if (parent.node.IsSeq()) {
      parent.node.items.push_back(std::move(node));
      return;
    }
    if (!parent.has_key) {
      parent.has_key = true;
      parent.drop_value = false;
      if (!node.IsScalar()) {
        Error(node.mark, "mapping keys must be plain scalars");
        parent.drop_value = true;
        return;
      }
      if (node.reported) {
        parent.drop_value = true;
        return;
      }
      if (const Mark* first = FindKey(&parent, node.value)) {
        Error(node.mark, "duplicate key '" + node.value + "' (first at line " +
                             std::to_string(first->line) + ", column " +
                             std::to_string(first->column) + ")");
        parent.drop_value = true;
        return;
      }
      parent.key = std::move(node.value);
      parent.key_mark = node.mark;
      return;
    }
    parent.has_key = false;
    if (parent.drop_value) return;
    parent.node.entries.push_back(YamlMapEntry{std::move(parent.key), parent.key_mark, std::move(node)});
    if (parent.index) parent.index->emplace(parent.node.entries.back().key, parent.key_mark);
  }

  static constexpr size_t kLinearKeys = 16;

  static const Mark* FindKey(Frame* f, const std::string& key) {
    const std::vector<YamlMapEntry>& entries = f->node.entries;
    if (!f->index && entries.size() < kLinearKeys) {
      for (const YamlMapEntry& e : entries) {
        if (e.key == key) return &e.key_mark;
      }
      return nullptr;
    }
    if (!f->index) {
      f->index = std::make_unique<std::unordered_map<std::string, Mark>>();
      for (const YamlMapEntry& e : entries) f->index->emplace(e.key, e.key_mark);
    }
    auto it = f->index->find(key);
    return it == f->index->end() ? nullptr : &it->second;
  }

  const std::string& file_;
  std::vector<Diagnostic>* errors_;
  const YamlLimits& limits_;
  std::vector<Frame> stack_;
  std::optional<YamlNode> root_;
  size_t nodes_ = 0;
};

}  // namespace

bool YamlNode::IsNull() const {
  return kind == Kind::kScalar && style == ScalarStyle::kPlain &&
         (value.empty() || value == "~" || value == "null" || value == "Null" || value == "NULL");
}

std::string Diagnostic::ToString() const {
  if (line <= 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

std::optional<YamlNode> ParseYaml(std::string_view text, const std::string& file,
                                  std::vector<Diagnostic>* errors, const YamlLimits& limits) {
  TreeBuilder builder(file, errors, limits);
  Parser parser;
  if (!parser.ok()) {
    builder.Error(Mark{}, "cannot initialise the YAML parser");
    return std::nullopt;
  }
  yaml_parser_set_input_string(parser.get(), reinterpret_cast<const unsigned char*>(text.data()),
                               text.size());
  yaml_parser_set_encoding(parser.get(), YAML_UTF8_ENCODING);
  int documents = 0;
  Event event;
  for (;;) {
    if (!event.Next(parser.get())) {
      const yaml_parser_t* p = parser.get();
      std::string problem = p->problem ? p->problem : "malformed YAML";
      Mark m = p->error == YAML_READER_ERROR ? MarkOfOffset(text, p->problem_offset)
                                             : ToMark(p->problem_mark);
      std::string msg = "YAML syntax error: " + problem;
      if (p->context != nullptr) {
        Mark c = ToMark(p->context_mark);
        msg += " (" + std::string(p->context) + " at line " + std::to_string(c.line) +
               ", column " + std::to_string(c.column) + ")";
      }
      builder.Error(m, std::move(msg));
      return std::nullopt;
    }
    Mark m = ToMark(event->start_mark);
    switch (event->type) {
      case YAML_STREAM_START_EVENT:
      case YAML_DOCUMENT_END_EVENT:
      case YAML_NO_EVENT:
        break;
      case YAML_STREAM_END_EVENT:
        if (documents == 0) {
          builder.Error(Mark{1, 1}, "empty policy file");
          return std::nullopt;
        }
        return std::move(builder.root());
      case YAML_DOCUMENT_START_EVENT:
        if (++documents > 1) {
          builder.Error(m, "a policy file holds one YAML document; a second one starts here");
          return std::move(builder.root());
        }
        break;
      case YAML_ALIAS_EVENT:
        if (!builder.CountNode(m)) return std::nullopt;
        builder.Alias(m, event->data.alias.anchor);
        break;
      case YAML_SCALAR_EVENT: {
        if (!builder.CountNode(m)) return std::nullopt;
        const auto& s = event->data.scalar;
        YamlNode node;
        node.kind = YamlNode::Kind::kScalar;
        node.mark = m;
        node.style = s.style == YAML_PLAIN_SCALAR_STYLE ? ScalarStyle::kPlain : ScalarStyle::kQuoted;
        node.value.assign(CStr(s.value), s.length);
        builder.Scalar(std::move(node), s.anchor, s.tag);
        break;
      }
      case YAML_SEQUENCE_START_EVENT:
        if (!builder.Open(YamlNode::Kind::kSeq, m, event->data.sequence_start.anchor,
                          event->data.sequence_start.tag)) {
          return std::nullopt;
        }
        break;
      case YAML_MAPPING_START_EVENT:
        if (!builder.Open(YamlNode::Kind::kMap, m, event->data.mapping_start.anchor,
                          event->data.mapping_start.tag)) {
          return std::nullopt;
        }
        break;
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT:
        builder.Close();
        break;
    }
  }
}

}  // namespace sealpost::policies
