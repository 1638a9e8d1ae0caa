// Writes shared/src/template/currency/data.rs, the compact table the `currency` template filter
// formats money with, from the CLDR data of the ICU that Node.js ships (run with a Node whose
// `process.versions.cldr` is the version to take: `node shared/tools/currency_data.mjs`).
// Also writes shared/src/template/currency/cases.txt, amounts as ICU formats them (half away
// from zero, no sign on a zero), which the filter's tests must reproduce.
// `node shared/tools/currency_data.mjs --all-cases FILE` also writes to FILE the cases of every
// tag looked at, region by region, for the tests to check once
// (`WAYMARK_CURRENCY_CASES=FILE cargo test -p waymark-shared --lib formats_as_cldr_does`).
import { writeFileSync } from "node:fs";

// The locales named, each its own entry: the languages and regions most shops write to.
const LOCALES = [
  "en", "en-AU", "en-CA", "en-GB", "en-IE", "en-IN", "en-NZ", "en-SG", "en-ZA",
  "de", "de-AT", "de-CH", "fr", "fr-BE", "fr-CA", "fr-CH", "it", "it-CH", "nl", "nl-BE",
  "es", "es-419", "es-AR", "es-CL", "es-CO", "es-MX", "es-US", "pt", "pt-PT",
  "sv", "da", "nb", "fi", "is", "pl", "cs", "sk", "hu", "ro", "bg", "el", "hr", "sl",
  "et", "lv", "lt", "ru", "uk", "tr", "he", "ja", "ko", "zh", "zh-HK", "zh-MO", "zh-TW", "hi", "id",
  "ms", "th", "vi", "fil",
];
// Tags that name one of those under another name (shortening does the rest: `zh-Hant-TW` is
// `zh-hant`).
const ALIASES = [
  ["no", "nb"], ["iw", "he"], ["in", "id"], ["tl", "fil"],
  ["zh-hans", "zh"], ["zh-hant", "zh-tw"], ["zh-hant-hk", "zh-hk"], ["zh-hant-mo", "zh-mo"],
];
// Then every region CLDR has for those languages (and Chinese's scripts in each region),
// where ICU writes money otherwise than the tag's shortening would: an alias where another
// entry writes it the same (`es-pr` is `es-us`), else an entry of its own (`es-pe`). A region
// CLDR has no data for is written as its language is, and shortening gives that.
const LANGUAGES = [...new Set(LOCALES.map((l) => l.split("-")[0]))];
const regionName = new Intl.DisplayNames("en", { type: "region", fallback: "none" });
const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const REGIONS = ["001", "150", "419"];
// A region's old code (`UK`, `DD`) after the current ones, so it is an alias of its successor.
const OLD = [];
for (const a of LETTERS) {
  for (const b of LETTERS) {
    try {
      if (!regionName.of(a + b)) continue;
    } catch {
      continue; // Not a region code.
    }
    (new Intl.Locale(`und-${a}${b}`).region === a + b ? REGIONS : OLD).push(a + b);
  }
}

const CODES = Intl.supportedValuesOf("currency");
const nf = (l, c, o = {}) =>
  new Intl.NumberFormat(l, { style: "currency", currency: c, roundingMode: "halfExpand", signDisplay: "negative", ...o });
const digits = (c) => nf("en", c).resolvedOptions().maximumFractionDigits;
// A symbol, with the left-to-right marks CLDR writes around some in a right-to-left locale
// (Hebrew's `\u200eCN¥\u200e`), which ICU gives as literals beside it.
const symbol = (l, c) => {
  const parts = nf(l, c).formatToParts(1);
  const i = parts.findIndex((p) => p.type === "currency");
  const lead = parts[i - 1]?.type === "literal" ? parts[i - 1].value.match(/\u200e*$/)[0] : "";
  const trail = parts[i + 1]?.type === "literal" ? parts[i + 1].value.match(/^\u200e*/)[0] : "";
  return lead + parts[i].value + trail;
};
const rs = (s) => JSON.stringify(s).replace(/[\u0080-\uffff]/g, (c) => "\\u{" + c.charCodeAt(0).toString(16) + "}");

// A locale's pattern, read with a currency whose symbol is a sign (no space added beside it).
const SIGNS = ["EUR", "USD", "GBP", "JPY"];
function pattern(l, x, codes = SIGNS) {
  for (const c of codes) {
    const parts = nf(l, c, { currencyDisplay: "narrowSymbol" }).formatToParts(x);
    const sym = parts.find((p) => p.type === "currency").value;
    if (/\p{L}/u.test(sym)) continue;
    const out = [];
    for (const p of parts) {
      const t = p.type;
      if (["integer", "group", "decimal", "fraction"].includes(t)) {
        if (out.at(-1) !== "Part::Number") out.push("Part::Number");
      } else if (t === "currency") out.push("Part::Symbol");
      else if (t === "minusSign") out.push(`Part::Text(${rs(p.value)})`);
      else if (t === "literal") out.push(`Part::Text(${rs(p.value)})`);
      else throw new Error(`${l}: ${t}`);
    }
    return out;
  }
  throw new Error(`${l}: no sign-like symbol`);
}

// Whether `l` writes Latin digits, as the filter does.
const latin = (l) => new Intl.NumberFormat(l).resolvedOptions().numberingSystem === "latn";

function numbers(l, c = "EUR") {
  // A currency's separators, which CLDR may give apart from a plain number's (Austria's
  // `€ 1.234,50` beside its `1 234,5`).
  const parts = nf(l, c, { useGrouping: "always", minimumFractionDigits: 2, maximumFractionDigits: 2 }).formatToParts(123456789.5);
  const ints = parts.filter((p) => p.type === "integer").map((p) => p.value.length);
  if (!latin(l)) throw new Error(`${l}: not written in Latin digits`);
  const four = nf(l, c).formatToParts(1234).some((p) => p.type === "group");
  return {
    decimal: parts.find((p) => p.type === "decimal").value,
    group: parts.find((p) => p.type === "group").value,
    primary: ints.at(-1),
    secondary: ints.at(-2),
    minGrouping: four ? 1 : 2,
  };
}

const defaults = new Map(CODES.map((c) => [c, symbol("en", c)]));
const key = (l) => l.toLowerCase();

// How `l` writes an amount of `c`, but for the symbol: its separators and the order of symbol,
// sign and number. The same for every code in nearly every locale; English of Europe and the
// regions that take from it write euros apart (`€1,234.50`, but `1,234.50 US$`).
function shape(l, c) {
  const out = [];
  const f = nf(l, c, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  for (const x of [1234567.5, -1234567.5]) {
    for (const p of f.formatToParts(x)) {
      if (p.type === "integer" || p.type === "fraction") out.push("N");
      else if (p.type !== "literal") out.push(p.type === "currency" ? "S" : p.value);
    }
  }
  return out.join("");
}

// All a tag decides: separators, grouping, patterns, every code's symbol, and the codes it
// writes otherwise (`formats`); `id` compares two, `format` two ways of writing.
function table(l) {
  const shapes = new Map(CODES.map((c) => [c, shape(l, c)]));
  const count = new Map();
  for (const s of shapes.values()) count.set(s, (count.get(s) ?? 0) + 1);
  const usual = [...count].sort((a, b) => b[1] - a[1])[0][0];
  const signs = SIGNS.filter((c) => shapes.get(c) === usual);
  const written = (codes) => {
    const n = numbers(l, codes[0]);
    const positive = pattern(l, 1234.5, codes);
    const negative = pattern(l, -1234.5, codes);
    return { n, positive, negative, format: JSON.stringify([n, positive, negative]) };
  };
  const { n, positive, negative, format } = written(signs);
  const formats = CODES.filter((c) => shapes.get(c) !== usual).map((c) => [c, written([c]).format]);
  const syms = new Map(CODES.map((c) => [c, symbol(l, c)]));
  const id = JSON.stringify([format, formats, [...syms]]);
  return { n, positive, negative, format, formats, syms, id };
}

// The entries, by lower-case tag, and the aliases, as the filter reads them.
const entries = new Map();
const aliases = new Map(ALIASES);
// The first entry of each language and table, which an alias of that language names.
const byId = new Map();
// The entry the filter finds for `k`, as `super::locale` shortens it.
function resolve(k) {
  for (;;) {
    const to = aliases.get(k) ?? k;
    if (entries.has(to)) return to;
    const cut = k.lastIndexOf("-");
    if (cut < 0) return "en";
    k = k.slice(0, cut);
  }
}
// A new entry's symbols: those that differ from the earlier entry (or English) that leaves
// fewest of its own, which it then `inherits`.
function add(l, t) {
  const own = (base) => CODES.filter((c) => t.syms.get(c) !== base.get(c));
  let inherits = "";
  let symbols = own(defaults);
  for (const [tag, e] of entries) {
    const mine = own(e.t.syms);
    if (mine.length < symbols.length) [inherits, symbols] = [tag, mine];
  }
  // A code written otherwise is written as another entry writes all its codes, one of the
  // same language if there is one.
  const formats = t.formats.map(([c, format]) => {
    const like = [...entries].filter(([, e]) => e.t.format === format).map(([tag]) => tag);
    const tag = like.find((tag) => language(tag) === language(key(l))) ?? like[0];
    if (!tag) throw new Error(`${l} writes ${c} as no entry writes money`);
    return [c, tag];
  });
  entries.set(key(l), { t, inherits, symbols: symbols.map((c) => [c, t.syms.get(c)]), formats });
  if (!byId.has(language(l) + t.id)) byId.set(language(l) + t.id, key(l));
}
const depth = (l) => l.split("-").length;
const language = (l) => l.split("-")[0];
for (const l of [...LOCALES].sort((a, b) => depth(a) - depth(b))) add(l, table(l));
const regional = [];
const tags = (regions) =>
  LANGUAGES.flatMap((lang) => [
    ...regions.map((r) => `${lang}-${r}`),
    ...(lang === "zh" ? regions.flatMap((r) => [`zh-Hans-${r}`, `zh-Hant-${r}`]) : []),
  ]).sort((a, b) => depth(a) - depth(b) || (key(a) < key(b) ? -1 : 1));
const candidates = ["zh-Hans", "zh-Hant", ...tags(REGIONS), ...tags(OLD)];
const foreign = [];
for (const l of candidates) {
  const k = key(l);
  if (entries.has(k) || aliases.has(k)) continue;
  // A tag ICU has no data for is written as its language is.
  if (new Intl.NumberFormat(l).resolvedOptions().locale === l.split("-")[0]) continue;
  if (!latin(l)) {
    foreign.push(l);
    continue;
  }
  const t = table(l);
  if (entries.get(resolve(k)).t.id === t.id) continue;
  regional.push(l);
  const same = byId.get(language(l) + t.id);
  if (same) aliases.set(k, same);
  else add(l, t);
}

let out = `// Generated by shared/tools/currency_data.mjs from CLDR ${process.versions.cldr} (ICU ${process.versions.icu}): do not edit.
// The symbols, separators, grouping and patterns of the locales the \`currency\` filter covers,
// and each ISO 4217 code's digits; see \`super\` for how they are read.

use super::{Locale, Part};

/// Every current ISO 4217 code CLDR knows, in order.
pub(super) const CODES: &[&str] = &[
${Array.from({ length: Math.ceil(CODES.length / 12) }, (_, i) => "    " + CODES.slice(i * 12, i * 12 + 12).map(rs).join(", ") + ",").join("\n")}
];

/// The codes whose amounts have other than 2 digits after the point.
pub(super) const DIGITS: &[(&str, u8)] = &[
${CODES.filter((c) => digits(c) !== 2).map((c) => `    (${rs(c)}, ${digits(c)}),`).join("\n")}
];

/// Each code's symbol in English where it is not the code itself; a locale's own are in its
/// \`symbols\`.
pub(super) const SYMBOLS: &[(&str, &str)] = &[
${CODES.filter((c) => defaults.get(c) !== c).map((c) => `    (${rs(c)}, ${rs(defaults.get(c))}),`).join("\n")}
];

/// Other names of covered locales, lower case: a region written as another covered locale
/// writes money (\`es-pr\` as \`es-us\`), or a language's other name (\`iw\`).
pub(super) const ALIASES: &[(&str, &str)] = &[
${[...aliases].sort(([a], [b]) => (a < b ? -1 : 1)).map(([a, b]) => `    (${rs(a)}, ${rs(b)}),`).join("\n")}
];

/// The covered locales, by lower-case tag, in order.
pub(super) const LOCALES: &[Locale] = &[
`;
// The patterns, shared, named for their parts.
const PART_NAMES = {
  "Part::Number": "NUMBER", "Part::Symbol": "SYMBOL", 'Part::Text("-")': "MINUS",
  'Part::Text("\\u{2212}")': "MINUS_SIGN", 'Part::Text("\\u{a0}")': "NBSP",
  'Part::Text("\\u{202f}")': "NNBSP", 'Part::Text(" ")': "SPACE",
  'Part::Text("\\u{200f}")': "RLM", 'Part::Text("\\u{200f}\\u{200e}")': "RLM_LRM",
  'Part::Text("\\u{a0}\\u{200f}")': "NBSP_RLM",
};
const patterns = new Map();
const patternName = (p) => {
  const name = p.map((part) => {
    if (!(part in PART_NAMES)) throw new Error(`no name for ${part}`);
    return PART_NAMES[part];
  }).join("_");
  patterns.set(name, p);
  return name;
};
let overrides = 0;
let rows = "";
for (const [k, e] of [...entries].sort(([a], [b]) => (a < b ? -1 : 1))) {
  const { n, positive, negative } = e.t;
  overrides += e.symbols.length;
  rows += `    Locale { tag: ${rs(k)}, decimal: ${rs(n.decimal)}, group: ${rs(n.group)}, primary: ${n.primary}, secondary: ${n.secondary}, min_grouping: ${n.minGrouping}, positive: ${patternName(positive)}, negative: ${patternName(negative)}, inherits: ${rs(e.inherits)}, formats: &[${e.formats.map(([c, tag]) => `(${rs(c)}, ${rs(tag)})`).join(", ")}], symbols: &[${e.symbols.map(([c, s]) => `(${rs(c)}, ${rs(s)})`).join(", ")}] },
`;
}
out += rows;
out += "];\n\n/// The patterns the locales share.\n";
for (const [name, p] of [...patterns].sort(([a], [b]) => (a < b ? -1 : 1))) {
  out += `const ${name}: &[Part] = &[${p.join(", ")}];\n`;
}
writeFileSync(new URL("../src/template/currency/data.rs", import.meta.url), out);

// Cases: every named locale and alias with a few currencies and amounts; every region added
// with those and each code whose symbol is not its language's.
const AMOUNTS = [1234.5, -1234567.891, 2.675, -0.001];
const CURRENCIES = ["EUR", "USD", "GBP", "JPY", "CHF", "KWD", "INR"];
const line = (l, c, x) => `${l}\t${c}\t${x}\t${nf(l, c).format(x)}\n`;
const header = `# Generated by shared/tools/currency_data.mjs from CLDR ${process.versions.cldr}: locale, code, amount, then what ICU prints (half away from zero), tab-separated.\n`;
let cases = header;
for (const l of [...LOCALES, ...ALIASES.map(([a]) => a)]) {
  for (const c of CURRENCIES) {
    for (const x of AMOUNTS) cases += line(l, c, x);
  }
}
const ownCodes = (l) => {
  const lang = entries.get(l.split("-")[0]).t.syms;
  const t = entries.get(resolve(key(l))).t.syms;
  return CODES.filter((c) => t.get(c) !== lang.get(c) && !CURRENCIES.includes(c));
};
for (const l of regional) {
  for (const c of ["EUR", "USD", "JPY", "CHF"]) {
    for (const x of [1234.5, -1234567.891]) cases += line(l, c, x);
  }
  for (const c of ownCodes(l)) cases += line(l, c, 1234.5);
}
writeFileSync(new URL("../src/template/currency/cases.txt", import.meta.url), cases);

const all = process.argv.indexOf("--all-cases");
if (all >= 0) {
  let more = header;
  for (const l of candidates) {
    if (foreign.includes(l)) continue;
    for (const c of CURRENCIES) more += line(l, c, -1234567.891);
  }
  for (const l of [...entries.keys(), ...aliases.keys()]) {
    for (const c of CODES) more += line(l, c, 1234.5);
  }
  writeFileSync(process.argv[all + 1], more);
}
console.error(
  `${entries.size} locales (${LOCALES.length} named), ${aliases.size} aliases, ${overrides} symbols of their own, ${CODES.length} codes; ${regional.length} regions added; written in other digits, so left to their language: ${foreign.join(" ") || "none"}`,
);
