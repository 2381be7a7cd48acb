// Parse TraceQL queries with Grafana's own grammar, @grafana/lezer-traceql: the parser
// Grafana's Tempo query editor uses to mark a query red.
//
// Input (stdin): JSON lines, each {"id": "...", "query": "..."} or a bare JSON string.
// Output (stdout): one JSON line first, {"grammar": name, "version": v}, then one line per
// query, in input order:
//   {"id", "query", "ok", "errors": [{"from", "to", "text", "near", "parent"}],
//    "attributes": [{"scope", "name", "text"}], "intrinsics": [text, ...],
//    "comparisons": [{"field", "op", "value"}], "filters": [{"text", "names", "attributes"}], "tree"}
// A query is ok when its parse tree has no error node (lezer's node type "⚠", type.isError).
// "attributes" are the AttributeField nodes: scope is span, resource, parent, event, link,
// instrumentation or null (unscoped "."), name is the attribute name as Tempo reads it
// (quoted parts unquoted: ."spanbench.run_id" -> spanbench.run_id). "comparisons" are the
// field-versus-string-literal comparisons (name = "run"), value unquoted. "filters" are the
// spanset filters ({ ... }), each with the span names it requires (name = "...") and the
// attributes it tests, so a check can ask whether those spans carry those attributes.
// Offsets are UTF-16 code units into the query, as lezer counts them.
//
// Install with `npm ci --prefix tests/support/traceql` (.ci/run does), then
//   node tests/support/traceql/parse.mjs < queries.jsonl
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { parser } from "@grafana/lezer-traceql";

// the package's "exports" hide its package.json: read it beside the entry point
const entry = createRequire(import.meta.url).resolve("@grafana/lezer-traceql");
const pkg = JSON.parse(readFileSync(join(dirname(entry), "package.json"), "utf8"));

const SCOPES = new Set(["Span", "Resource", "Parent", "Event", "Link", "Instrumentation"]);

// An attribute name as Tempo's lexer reads it: unquoted runs kept, "quoted" parts
// unescaped (\" and \\), so .foo."bar.baz" is foo.bar.baz.
function attributeName(identifier) {
  let out = "";
  for (let i = 0; i < identifier.length; i++) {
    if (identifier[i] !== '"') {
      out += identifier[i];
      continue;
    }
    for (i += 1; i < identifier.length && identifier[i] !== '"'; i++) {
      if (identifier[i] === "\\") i += 1;
      out += identifier[i];
    }
  }
  return out;
}

function stringValue(literal) {
  if (literal.startsWith("`")) return literal.slice(1, -1);
  try {
    return JSON.parse(literal);
  } catch {
    return literal.slice(1, -1);
  }
}

function children(node) {
  const out = [];
  for (let c = node.firstChild; c; c = c.nextSibling) out.push(c);
  return out;
}

// a FieldExpression that is just a field: the IntrinsicField or AttributeField node
function bareField(node) {
  const kids = children(node);
  if (kids.length === 1 && ["IntrinsicField", "AttributeField"].includes(kids[0].type.name)) return kids[0];
  return null;
}

// a FieldExpression that is just a string literal: the String node
function bareString(node) {
  const kids = children(node);
  if (kids.length !== 1 || kids[0].type.name !== "Static") return null;
  const inner = children(kids[0]);
  return inner.length === 1 && inner[0].type.name === "String" ? inner[0] : null;
}

function check(query) {
  const tree = parser.parse(query);
  const text = (n) => query.slice(n.from, n.to);
  const errors = [];
  const attributes = [];
  const intrinsics = [];
  const comparisons = [];
  const filters = [];
  const open = []; // the spanset filters the walk is inside, innermost last
  tree.iterate({
    leave(ref) {
      if (ref.type.name === "SpansetFilter") filters.push(open.pop());
    },
    enter(ref) {
      const node = ref.node;
      const name = ref.type.name;
      const inFilter = open.length ? open[open.length - 1] : null;
      if (name === "SpansetFilter") {
        open.push({ text: text(node), names: [], attributes: [] });
      } else if (ref.type.isError) {
        errors.push({
          from: ref.from,
          to: ref.to,
          text: text(node),
          near: query.slice(ref.from, ref.from + 24),
          parent: node.parent ? node.parent.type.name : null,
        });
      } else if (name === "AttributeField") {
        const kids = children(node);
        const scope = kids.find((k) => SCOPES.has(k.type.name));
        const ident = kids.find((k) => k.type.name === "Identifier");
        const attribute = {
          scope: scope ? scope.type.name.toLowerCase() : null,
          name: ident ? attributeName(text(ident)) : null,
          text: text(node),
        };
        attributes.push(attribute);
        if (inFilter) inFilter.attributes.push(attribute);
      } else if (name === "IntrinsicField") {
        intrinsics.push(text(node));
      } else if (name === "FieldExpression") {
        const kids = children(node);
        if (kids.length === 3 && kids[1].type.name === "FieldOp") {
          for (const [f, s] of [[kids[0], kids[2]], [kids[2], kids[0]]]) {
            const field = bareField(f);
            const str = bareString(s);
            if (!field || !str) continue;
            const comparison = { field: text(field), op: text(kids[1]), value: stringValue(text(str)) };
            comparisons.push(comparison);
            if (inFilter && field.type.name === "IntrinsicField" && ["name", "span:name"].includes(comparison.field)
                && comparison.op === "=") {
              inFilter.names.push(comparison.value);
            }
          }
        }
      }
    },
  });
  return { ok: errors.length === 0, errors, attributes, intrinsics, comparisons, filters, tree: tree.toString() };
}

const out = [JSON.stringify({ grammar: pkg.name, version: pkg.version })];
const input = readFileSync(0, "utf8");
let lineNo = 0;
for (const line of input.split("\n")) {
  lineNo += 1;
  if (!line.trim()) continue;
  let item;
  try {
    item = JSON.parse(line);
  } catch (err) {
    process.stderr.write(`stdin line ${lineNo}: not JSON: ${err.message}\n`);
    process.exit(2);
  }
  const { id, query } = typeof item === "string" ? { id: String(lineNo), query: item } : item;
  if (typeof query !== "string") {
    process.stderr.write(`stdin line ${lineNo}: no "query" string\n`);
    process.exit(2);
  }
  out.push(JSON.stringify({ id, query, ...check(query) }));
}
process.stdout.write(out.join("\n") + "\n");
