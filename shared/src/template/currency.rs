//! The `currency` filter: an amount as money, written as the reader's locale writes it
//! (`{{ event.total | currency(event.currency) }}` is `€89.90` in English, `89,90 €` in German).
//! Formats from a compact table drawn from CLDR (`currency/data.rs`, generated); reads no
//! clock and no system locale, so the same input renders the same text everywhere.

// Generated, and kept as the generator writes it.
#[rustfmt::skip]
mod data;

use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{Error, ErrorKind, State, Value};

/// One part of a locale's pattern for an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The digits, grouped, with the decimal separator.
    Number,
    /// The currency's symbol (`€`, `CHF`, `US$`).
    Symbol,
    /// Text written as it is (a no-break space, a minus sign, a direction mark).
    Text(&'static str),
}

/// How one locale writes money, as CLDR has it.
#[derive(Debug)]
pub(crate) struct Locale {
    /// The tag in lower case (`de-ch`).
    pub tag: &'static str,
    pub decimal: &'static str,
    pub group: &'static str,
    /// The size of the group nearest the decimal separator (3), and of the others (3; 2 in
    /// India's `12,34,567`).
    pub primary: u8,
    pub secondary: u8,
    /// How many digits must stand before the first group for it to be set apart: 2 in Spanish
    /// and Polish, which write `1234` but `12 345`.
    pub min_grouping: u8,
    pub positive: &'static [Part],
    pub negative: &'static [Part],
    /// The covered locale whose symbols this one's are read after (`es-419` for `es-pe`), or
    /// none (`""`): English's.
    pub inherits: &'static str,
    /// Codes this locale writes as another covered one writes money, separators and pattern
    /// (English of Europe writes euros as English does, `€1,234.50`, and dollars its own way,
    /// `1,234.50 US$`); the symbol is still this locale's.
    pub formats: &'static [(&'static str, &'static str)],
    /// Symbols that differ from those it inherits (`$US` in French; the code itself, `JPY`,
    /// where the locale has no symbol; Peru's `S/` beside the rest of Latin America's).
    pub symbols: &'static [(&'static str, &'static str)],
}

/// The locale used when the user has none, or one the table does not cover.
const ENGLISH: &str = "en";

/// The covered locale for a BCP 47 tag (`de-DE`, `pt_BR`, `zh-Hant-TW`) or a POSIX one
/// (`de_CH.UTF-8`, `de_DE@euro`, whose charset and modifier say nothing of money): the tag
/// itself, else shortened part by part (`de-DE` is `de`, `fr-CA` is its own), else English.
/// Allocates nothing: each shortening is looked up by its packed key.
pub(crate) fn locale(tag: Option<&str>) -> &'static Locale {
    &data::LOCALES[locale_at(tag)]
}

/// Where [`locale`]'s answer for `tag` is in the table of covered locales. The `date` filter's
/// names (`date::names`) follow the same table in the same order, so a tag finds the same
/// locale for both (in the send's own template `date` writes English names unless told
/// `locale=`, where `currency` still writes her locale's money: see the README).
pub(crate) fn locale_at(tag: Option<&str>) -> usize {
    if let Some(tag) = tag {
        let mut key = posix_base(tag).trim().as_bytes();
        loop {
            if let Some(found) = covered_at(tag_key(key)) {
                return found;
            }
            // `_` is read as `-`.
            match key.iter().rposition(|b| matches!(b, b'-' | b'_')) {
                Some(cut) => key = &key[..cut],
                None => break,
            }
        }
    }
    ENGLISH_AT
}

/// How many locales the table covers.
pub(crate) const COVERED: usize = data::LOCALES.len();

/// The lower-case tag of the covered locale at `at` (below [`COVERED`]).
pub(crate) const fn covered_tag(at: usize) -> &'static str {
    data::LOCALES[at].tag
}

/// A tag without a POSIX charset or modifier (`de_CH.UTF-8` and `de_CH@euro` are `de_CH`).
fn posix_base(tag: &str) -> &str {
    tag.split(['.', '@']).next().unwrap_or(tag)
}

/// The covered locale `key` (lower case) names, itself or by an alias.
fn covered(key: &str) -> Option<&'static Locale> {
    covered_key(tag_key(key.as_bytes()))
}

fn covered_key(key: u128) -> Option<&'static Locale> {
    data::LOCALES.get(covered_at(key)?)
}

/// Where the covered locale `key` names, itself or by an alias, is in the table.
fn covered_at(key: u128) -> Option<usize> {
    match find_tag(&ALIAS_KEYS, key) {
        Some(alias) => ALIAS_TARGETS.get(alias).copied(),
        None => find_tag(&LOCALE_KEYS, key),
    }
}

/// A tag (at most 16 bytes, none NUL) as a number that sorts as the tag does, read in lower
/// case with `_` as `-`; `u128::MAX`, which no table's tag is, for any other text. Equal keys
/// are equal tags, so a table is searched by halves without comparing text.
const fn tag_key(tag: &[u8]) -> u128 {
    if tag.len() > 16 {
        return u128::MAX;
    }
    let mut key = [0u8; 16];
    let mut i = 0;
    while i < tag.len() {
        key[i] = match tag[i] {
            b'_' => b'-',
            0 => return u128::MAX,
            b => b.to_ascii_lowercase(),
        };
        i += 1;
    }
    u128::from_be_bytes(key)
}

/// A code (three bytes, as written) as a number that sorts as the code does; `u32::MAX`, which
/// no table's code is, for any other text.
const fn code_key(code: &[u8]) -> u32 {
    match code {
        [a, b, c] => u32::from_be_bytes([0, *a, *b, *c]),
        _ => u32::MAX,
    }
}

/// Where `key` is in the ascending `keys`.
const fn find_tag(keys: &[u128], key: u128) -> Option<usize> {
    let (mut lo, mut hi) = (0, keys.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if keys[mid] == key {
            return Some(mid);
        } else if keys[mid] < key {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    None
}

/// Where `key` is in the ascending `keys`.
const fn find_code(keys: &[u32], key: u32) -> Option<usize> {
    let (mut lo, mut hi) = (0, keys.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if keys[mid] == key {
            return Some(mid);
        } else if keys[mid] < key {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    None
}

/// Whether `keys` ascend strictly, so [`find_tag`] and [`find_code`] may search them by halves.
const fn ascending(keys: &[u128]) -> bool {
    let mut i = 1;
    while i < keys.len() {
        if keys[i - 1] >= keys[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn ascending_codes(keys: &[u32]) -> bool {
    let mut i = 1;
    while i < keys.len() {
        if keys[i - 1] >= keys[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The packed keys of the generated tables, worked out when the crate is built; a table out of
/// order, an alias to no covered locale or no English fails the build.
const LOCALE_KEYS: [u128; data::LOCALES.len()] = {
    let mut keys = [0; data::LOCALES.len()];
    let mut i = 0;
    while i < keys.len() {
        keys[i] = tag_key(data::LOCALES[i].tag.as_bytes());
        i += 1;
    }
    assert!(ascending(&keys), "data::LOCALES is out of order");
    keys
};
const ALIAS_KEYS: [u128; data::ALIASES.len()] = {
    let mut keys = [0; data::ALIASES.len()];
    let mut i = 0;
    while i < keys.len() {
        keys[i] = tag_key(data::ALIASES[i].0.as_bytes());
        i += 1;
    }
    assert!(ascending(&keys), "data::ALIASES is out of order");
    keys
};
const ALIAS_TARGETS: [usize; data::ALIASES.len()] = {
    let mut at = [0; data::ALIASES.len()];
    let mut i = 0;
    while i < at.len() {
        at[i] = match find_tag(&LOCALE_KEYS, tag_key(data::ALIASES[i].1.as_bytes())) {
            Some(to) => to,
            None => panic!("an alias names no covered locale"),
        };
        i += 1;
    }
    at
};
/// Where English, the locale of a user with none, is in the table.
pub(crate) const ENGLISH_AT: usize = match find_tag(&LOCALE_KEYS, tag_key(ENGLISH.as_bytes())) {
    Some(i) => i,
    None => panic!("English is not covered"),
};
const CODE_KEYS: [u32; data::CODES.len()] = {
    let mut keys = [0; data::CODES.len()];
    let mut i = 0;
    while i < keys.len() {
        keys[i] = code_key(data::CODES[i].as_bytes());
        i += 1;
    }
    assert!(ascending_codes(&keys), "data::CODES is out of order");
    keys
};
/// Each code's digits after the point, by its place in `CODES`.
const PLACES: [u8; data::CODES.len()] = {
    let mut places = [2; data::CODES.len()];
    let mut i = 0;
    while i < data::DIGITS.len() {
        let (code, digits) = data::DIGITS[i];
        match find_code(&CODE_KEYS, code_key(code.as_bytes())) {
            Some(at) => places[at] = digits,
            None => panic!("data::DIGITS has a code not in data::CODES"),
        }
        i += 1;
    }
    places
};
const SYMBOL_KEYS: [u32; data::SYMBOLS.len()] = {
    let mut keys = [0; data::SYMBOLS.len()];
    let mut i = 0;
    while i < keys.len() {
        keys[i] = code_key(data::SYMBOLS[i].0.as_bytes());
        i += 1;
    }
    assert!(ascending_codes(&keys), "data::SYMBOLS is out of order");
    keys
};
/// Whether `code` (upper case) is an ISO 4217 code CLDR knows.
pub(crate) fn known(code: &str) -> bool {
    find_code(&CODE_KEYS, code_key(code.as_bytes())).is_some()
}

/// `code`'s symbol in `locale`: its own, else the one of the locale it inherits from (and so
/// on), else English's, else none (the code is written).
fn symbol(locale: &'static Locale, code: u32) -> Option<&'static str> {
    let own = |table: &'static [(&'static str, &'static str)]| {
        table
            .iter()
            .find(|(c, _)| code_key(c.as_bytes()) == code)
            .map(|(_, s)| *s)
    };
    // The generator has each locale inherit from one before it, so the chain ends; it is
    // bounded all the same. English's symbols end it (`inherits: ""`).
    std::iter::successors(Some(locale), |l| match l.inherits {
        "" => None,
        from => covered(from),
    })
    .take(data::LOCALES.len())
    .find_map(|l| own(l.symbols))
    .or_else(|| find_code(&SYMBOL_KEYS, code).and_then(|i| data::SYMBOLS.get(i).map(|(_, s)| *s)))
}

/// A currency as a message names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Code<'a> {
    /// None given (a missing `event.currency`): the amount alone, with 2 digits.
    Missing,
    /// An ISO 4217 code, any case (`EUR`, Stripe's `eur`), or text the table does not know
    /// (printed as written, in capitals when it is three letters, with 2 digits).
    Text(&'a str),
}

/// `amount` written as `locale` writes it in `code`. `amount` is a plain decimal as Rust prints
/// a number (`-1234.5`, `1e21` spelt out): rounded half away from zero as written (`2.675` is
/// `2.68`), to the currency's digits; a negative amount that rounds to zero prints as zero.
/// `None` when `amount` is not such a decimal.
pub(crate) fn format(amount: &str, code: &Code<'_>, locale: &'static Locale) -> Option<String> {
    let mut out = String::new();
    format_into(&mut out, amount, code, locale)?;
    Some(out)
}

/// [`format`], written at the end of `out`; `None`, and `out` as it was, when `amount` is not a
/// decimal. Allocates nothing but `out`'s room (and a buffer for an amount of over 60 digits).
pub(crate) fn format_into(
    out: &mut String,
    amount: &str,
    code: &Code<'_>,
    locale: &'static Locale,
) -> Option<()> {
    let (negative, magnitude) = match amount.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, amount),
    };
    let (whole, fraction) = magnitude.split_once('.').unwrap_or((magnitude, ""));
    if whole.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut upper = [0u8; 3];
    let written = locale;
    let (symbol, places, locale) = match code {
        Code::Missing => ("", 2, written),
        Code::Text(text) => {
            let text = text.trim();
            // Three letters are a code in any case; the table's codes are all three letters.
            let letters = text.len() == 3 && text.bytes().all(|b| b.is_ascii_alphabetic());
            if letters {
                upper.copy_from_slice(text.as_bytes());
                upper.make_ascii_uppercase();
            }
            let key = code_key(&upper);
            match letters.then(|| find_code(&CODE_KEYS, key)).flatten() {
                Some(at) => {
                    let like = locale
                        .formats
                        .iter()
                        .find(|(c, _)| code_key(c.as_bytes()) == key)
                        .and_then(|(_, tag)| covered(tag))
                        .unwrap_or(locale);
                    let places = PLACES.get(at).map_or(2, |p| usize::from(*p));
                    let code = data::CODES.get(at).copied().unwrap_or_default();
                    (symbol(locale, key).unwrap_or(code), places, like)
                }
                None if letters => (std::str::from_utf8(&upper).unwrap_or(text), 2, written),
                None => (text, 2, written),
            }
        }
    };

    // The digits, rounded half away from zero to `places`, with room before them for a carry
    // (`9.995` is `10.00`).
    let len = 1 + whole.len() + places;
    let mut stack = [b'0'; 64];
    let mut heap = Vec::new();
    let digits: &mut [u8] = match stack.get_mut(..len) {
        Some(digits) => digits,
        None => {
            heap.resize(len, b'0');
            &mut heap
        }
    };
    let kept = fraction.len().min(places);
    digits[1..=whole.len()].copy_from_slice(whole.as_bytes());
    digits[1 + whole.len()..1 + whole.len() + kept].copy_from_slice(&fraction.as_bytes()[..kept]);
    if fraction.as_bytes().get(places).is_some_and(|d| *d >= b'5') {
        // The carry stops at the first digit that is not a 9: the leading room at the latest.
        for d in digits.iter_mut().rev() {
            if *d == b'9' {
                *d = b'0';
            } else {
                *d += 1;
                break;
            }
        }
    }
    let zero = digits.iter().all(|d| *d == b'0');
    let (whole, fraction) = digits.split_at(len - places);
    // No leading zeros but one (`007` is `7`).
    let leading = whole.iter().take_while(|d| **d == b'0').count();
    let whole = &whole[leading.min(whole.len() - 1)..];

    let pattern = if negative && !zero {
        locale.negative
    } else {
        locale.positive
    };
    let start = out.len();
    out.reserve(whole.len() * 2 + places + symbol.len() + 16);
    let beside_symbol = |i: usize| {
        [i.checked_sub(1), i.checked_add(1)]
            .into_iter()
            .flatten()
            .any(|j| pattern.get(j) == Some(&Part::Symbol))
    };
    for (i, part) in pattern.iter().enumerate() {
        match part {
            Part::Number => {
                grouped(out, whole, locale);
                if places > 0 {
                    out.push_str(locale.decimal);
                    push_digits(out, fraction);
                }
            }
            // No symbol: nor the space and direction marks beside it (Hebrew's `\u{a0}\u{200f}`),
            // which would be left at the end of the amount, unseen.
            Part::Text(text) if symbol.is_empty() && blank(text) && beside_symbol(i) => {}
            Part::Text(text) => out.push_str(text),
            Part::Symbol if symbol.is_empty() => {}
            Part::Symbol => {
                out.push_str(symbol);
                // CLDR's currency spacing: a symbol that ends (or begins) with a letter, right
                // against the digits, is kept apart from them by a no-break space (`CHF 5.00`,
                // where `$5.00` has none).
                if pattern.get(i + 1) == Some(&Part::Number)
                    && symbol.chars().last().is_some_and(wordy)
                {
                    out.push('\u{a0}');
                }
            }
        }
        if *part == Part::Number {
            if let Some(Part::Symbol) = pattern.get(i + 1) {
                if symbol.chars().next().is_some_and(wordy) {
                    out.push('\u{a0}');
                }
            }
        }
    }
    // A symbol left out may leave a space at either end.
    const SPACES: [char; 3] = ['\u{a0}', '\u{202f}', ' '];
    let kept = out[start..].trim_end_matches(SPACES).len();
    out.truncate(start + kept);
    let lead = kept - out[start..].trim_start_matches(SPACES).len();
    if lead > 0 {
        out.replace_range(start..start + lead, "");
    }
    Some(())
}

/// ASCII digits, as text.
fn push_digits(out: &mut String, digits: &[u8]) {
    out.extend(digits.iter().map(|d| char::from(*d)));
}

/// Whether `text` is only spaces and direction marks, which set a symbol apart.
fn blank(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_whitespace() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{61c}'))
}

/// Whether `c`, at the edge of a symbol, is what CLDR keeps apart from digits: anything but a
/// sign (`$`, `€`, `¥`) or a space.
fn wordy(c: char) -> bool {
    // The signs and marks symbols begin and end with are answered without Unicode's tables
    // (`wordy_is_unicodes_answer` checks every character against them).
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || (c.is_ascii_punctuation() && !"$+<=>^`|~".contains(c));
    }
    if matches!(
        c,
        '\u{a0}'..='\u{a5}' | '\u{200e}' | '\u{200f}' | '\u{202f}' | '\u{20a0}'..='\u{20cf}' | '\u{ffe0}'..='\u{ffe6}'
    ) {
        return false;
    }
    c.is_alphanumeric()
}

/// The whole part (ASCII digits) with `locale`'s group separators, written at the end of `out`.
fn grouped(out: &mut String, whole: &[u8], locale: &Locale) {
    let primary = usize::from(locale.primary.max(1));
    let secondary = usize::from(locale.secondary.max(1));
    if whole.len() < primary + usize::from(locale.min_grouping) {
        push_digits(out, whole);
        return;
    }
    // The group nearest the point starts at `last`; the others every `secondary` digits before
    // it, the first (`first`) of at most `secondary` digits.
    let last = whole.len() - primary;
    let mut first = last;
    while first > secondary {
        first -= secondary;
    }
    push_digits(out, &whole[..first]);
    let mut at = first;
    while at < last {
        out.push_str(locale.group);
        push_digits(out, &whole[at..at + secondary]);
        at += secondary;
    }
    out.push_str(locale.group);
    push_digits(out, &whole[last..]);
}

/// `amount` as [`format`] writes its decimal text ([`decimal_of_f64`]): with no text in
/// between where the float has few digits (a price), else through that text. `None` for an
/// infinite amount.
pub(crate) fn format_f64(amount: f64, code: &Code<'_>, locale: &'static Locale) -> Option<String> {
    let mut buf = [0; 40];
    match short_decimal(amount, &mut buf) {
        Some(text) => format(text, code, locale),
        None => format(&decimal_of_f64(amount)?, code, locale),
    }
}

/// `amount` as [`format`] writes its decimal text, with no text in between.
pub(crate) fn format_int(amount: i128, code: &Code<'_>, locale: &'static Locale) -> Option<String> {
    let mut buf = [0; 40];
    format(int_decimal(amount, &mut buf), code, locale)
}

/// `amount` in decimal, written at the end of `buf` (which holds every `i128`).
fn int_decimal(amount: i128, buf: &mut [u8; 40]) -> &str {
    let mut at = buf.len();
    let mut push = |d: u8| {
        at -= 1;
        buf[at] = d;
    };
    // A `u64` is divided by 10 in a few instructions, a `u128` by a call.
    match u64::try_from(amount.unsigned_abs()) {
        Ok(mut n) => loop {
            push(b'0' + (n % 10) as u8);
            n /= 10;
            if n == 0 {
                break;
            }
        },
        Err(_) => {
            let mut n = amount.unsigned_abs();
            loop {
                push(b'0' + (n % 10) as u8);
                n /= 10;
                if n == 0 {
                    break;
                }
            }
        }
    }
    if amount < 0 {
        push(b'-');
    }
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}

/// The text Rust prints for `f` (`79.9`, `-0.05`, `10`), written in `buf`, when it has at
/// most 22 digits after the point and is below 2^50 times a power of ten; else `None` (the
/// caller prints it).
///
/// Rust prints the shortest decimal that reads back as `f`. The decimal with `k` digits after
/// the point nearest `f` is `round(f * 10^k) / 10^k`: below 2^50 the product is off by under
/// a sixteenth, and a decimal that reads back as `f` is within a sixteenth of the exact
/// product too, so it can only be that one. It reads back as `f` when the division, rounded
/// as reading rounds (nearest, ties to even; `10^k` and the integer are exact), gives `f`.
/// The first `k` at which it does gives the fewest digits, and an integer below 2^50 is its
/// own shortest decimal.
fn short_decimal(f: f64, buf: &mut [u8; 40]) -> Option<&str> {
    const POWERS: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    const LIMIT: f64 = (1u64 << 50) as f64;
    let magnitude = f.abs();
    if !magnitude.is_finite() {
        return None;
    }
    let (places, n) = POWERS.iter().enumerate().find_map(|(k, p)| {
        let x = magnitude * p;
        if x >= LIMIT {
            return Some(None);
        }
        let n = x.round();
        (n / p == magnitude).then_some(Some((k, n as u64)))
    })??;
    // The digits from the end: the fraction's (`places` of them), the point, the whole's.
    let mut at = buf.len();
    let mut push = |d: u8| {
        at -= 1;
        buf[at] = d;
    };
    let mut n = n;
    for _ in 0..places {
        push(b'0' + (n % 10) as u8);
        n /= 10;
    }
    if places > 0 {
        push(b'.');
    }
    loop {
        push(b'0' + (n % 10) as u8);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if f.is_sign_negative() {
        push(b'-');
    }
    std::str::from_utf8(&buf[at..]).ok()
}

/// A number as the decimal text [`format`] reads: an integer as it is, a float as Rust prints
/// it (the shortest text that reads back as the same float). `None` for an infinite one.
pub(crate) fn decimal_of_f64(f: f64) -> Option<String> {
    f.is_finite().then(|| format!("{f}"))
}

/// Why a `code` written in a template cannot be a currency: not an ISO 4217 code the table
/// knows (`EURO`: did you mean `EUR`?). Read by `waymark validate` from a literal argument.
/// No code (`currency('')`) is none: the filter writes the amount alone, as for a missing
/// `event.currency`, and validate takes what rendering takes.
pub(crate) fn code_problem(code: &str) -> Option<String> {
    let upper = code.trim().to_ascii_uppercase();
    if upper.is_empty() || known(&upper) {
        return None;
    }
    let guess = crate::dsl::closest(&upper, data::CODES.iter().copied())
        .map(|c| format!("did you mean '{c}'? "))
        .unwrap_or_default();
    Some(format!(
        "currency: '{code}' is not an ISO 4217 currency code: {guess}write one like currency('EUR'), or currency(event.currency) to take it from the event"
    ))
}

/// Why a `locale=` written in a template, for `filter` (`currency`, `date`), is no locale tag
/// (`locale='German'`). A tag the table does not cover is no problem: it is shortened, else
/// English.
pub(crate) fn locale_problem(filter: &str, tag: &str) -> Option<String> {
    let mut parts = posix_base(tag).split(['-', '_']);
    let language = parts.next().unwrap_or_default();
    let ok = (2..=3).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_alphabetic())
        && parts
            .all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    (!ok).then(|| {
        format!("{filter}: '{tag}' is not a locale tag: write one like locale='de-DE', locale='fr' or locale='en-GB'")
    })
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

const USAGE: &str = "write it like currency('EUR') or currency(event.currency)";

/// `value | currency(code, locale=tag)`: see the module. The code is given in place or as
/// `code=`; the locale is `locale=` when given, else the user's (`profile.locale`), else
/// English. A value the user or the event does not have prints nothing; a number sent as text
/// (`"19.99"`) is the number it says; anything else is an error, as for `round`.
pub fn currency(
    state: &State<'_, '_>,
    value: Value,
    // Not an `Option<Value>`, which reads a missing `event.currency` as no argument at all.
    args: Rest<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    // `code=event.currency` too may be missing: not the same as no `code=`.
    let by_keyword = match kwargs.has("code") {
        true => Some(kwargs.get::<Value>("code")?),
        false => None,
    };
    let locale_arg: Option<Value> = kwargs.get("locale")?;
    kwargs.assert_all_used()?;
    if args.len() > 1 {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            format!("currency: takes one code, and the locale as `locale=`: {USAGE}"),
        ));
    }
    let code = match (args.first().cloned(), by_keyword) {
        (Some(_), Some(_)) => {
            return Err(Error::new(
                ErrorKind::TooManyArguments,
                "currency: `code` is given twice".to_string(),
            ))
        }
        (None, None) => {
            return Err(Error::new(
                ErrorKind::MissingArgument,
                format!("currency: takes the currency's ISO 4217 code: {USAGE}"),
            ))
        }
        (Some(c), None) | (None, Some(c)) => c,
    };
    // The arguments are checked whatever the value, so a mistake in them shows at once.
    let code = match code.kind() {
        ValueKind::Undefined | ValueKind::None => Code::Missing,
        ValueKind::String if code.as_str().is_some_and(|s| s.trim().is_empty()) => Code::Missing,
        ValueKind::String => Code::Text(code.as_str().unwrap_or_default()),
        _ => {
            return Err(invalid(format!(
                "currency: its code is text like 'EUR', not {code} ({}): {USAGE}",
                code.kind()
            )))
        }
    };
    let tag = match &locale_arg {
        Some(l) if l.is_undefined() || l.is_none() => None,
        Some(l) => Some(l.as_str().map(str::to_string).ok_or_else(|| {
            invalid(format!(
                "currency: `locale=` is a tag like 'de-DE', not {l} ({})",
                l.kind()
            ))
        })?),
        None => None,
    };
    if super::number::missing(&value) {
        return Ok(value);
    }
    let tag = tag.or_else(|| {
        let profile = state.lookup("profile")?;
        let locale = profile.get_attr("locale").ok()?;
        locale.as_str().map(str::to_string)
    });
    let locale = locale(tag.as_deref());
    let text = match value.kind() {
        ValueKind::Number => {
            let integer = value
                .is_integer()
                .then(|| i128::try_from(value.clone()).ok());
            match integer.flatten() {
                Some(i) => format_int(i, &code, locale),
                None => f64::try_from(value.clone())
                    .ok()
                    .and_then(|f| format_f64(f, &code, locale)),
            }
        }
        ValueKind::String => text_amount(value.as_str().unwrap_or_default())
            .and_then(|amount| format(&amount, &code, locale)),
        _ => None,
    };
    text.map(Value::from).ok_or_else(|| not_a_number(&value))
}

/// Text that says a number (`"19.99"`, `" 5 "`, `"1e3"`), as the decimal [`format`] reads. A
/// plain decimal is taken as written, every digit of it (`"2.6749999999999998"` is not the
/// float 2.675, and `"100000000000000000.5"` keeps its half); only a number with an exponent
/// is read as a float, and must be finite.
pub(crate) fn text_amount(text: &str) -> Option<String> {
    let text = text.trim();
    plain_decimal(text).or_else(|| text.parse::<f64>().ok().and_then(decimal_of_f64))
}

/// `text` as [`format`] reads it, when it is a plain decimal: `[+-]?\d+(\.\d*)?` or
/// `[+-]?\.\d+` (`"+5"` is `5`, `"-.5"` is `-0.5`).
fn plain_decimal(text: &str) -> Option<String> {
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = rest.split_once('.').unwrap_or((rest, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) || (whole.is_empty() && fraction.is_empty()) {
        return None;
    }
    let whole = if whole.is_empty() { "0" } else { whole };
    Some(match fraction {
        "" => format!("{sign}{whole}"),
        _ => format!("{sign}{whole}.{fraction}"),
    })
}

fn not_a_number(value: &Value) -> Error {
    invalid(format!(
        "currency: {value} ({}) is not a number",
        value.kind()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::render;
    use serde_json::json;

    /// What `source` renders to for a user whose `profile.locale` is `locale` (none: `None`),
    /// with `event`.
    fn rendered(
        source: &str,
        locale: Option<&str>,
        event: serde_json::Value,
    ) -> Result<String, String> {
        let profile = match locale {
            Some(l) => json!({ "locale": l }),
            None => json!({}),
        };
        let ctx = json!({"event": event, "profile": profile, "journey": {"id": "j"}});
        render(source, &ctx, false).map_err(|e| e.message)
    }

    /// The reader's locale decides the symbol's place, the separators and the grouping, as CLDR
    /// writes them (the narrow no-break space of French, the apostrophe of Swiss German, India's
    /// lakh).
    #[test]
    fn an_amount_is_written_as_the_users_locale_writes_money() {
        let source = "{{ event.total | currency(event.currency) }}";
        for (locale, total, code, want) in [
            (Some("de-DE"), json!(1234.5), "EUR", "1.234,50\u{a0}€"),
            (Some("de"), json!(89.9), "EUR", "89,90\u{a0}€"),
            (Some("fr"), json!(1234.5), "EUR", "1\u{202f}234,50\u{a0}€"),
            (
                Some("fr-FR"),
                json!(1234.5),
                "USD",
                "1\u{202f}234,50\u{a0}$US",
            ),
            (Some("en-US"), json!(1234.5), "USD", "$1,234.50"),
            (Some("en-GB"), json!(1234.5), "GBP", "£1,234.50"),
            (Some("en-GB"), json!(1234.5), "USD", "US$1,234.50"),
            (Some("ja"), json!(1234.5), "JPY", "￥1,235"),
            (Some("ja-JP"), json!(1234), "JPY", "￥1,234"),
            (Some("de-CH"), json!(1234.5), "CHF", "CHF\u{a0}1'234.50"),
            (Some("en-IN"), json!(123456), "INR", "₹1,23,456.00"),
            (Some("en-IN"), json!(12345678.9), "INR", "₹1,23,45,678.90"),
            (Some("es"), json!(1234.5), "EUR", "1234,50\u{a0}€"),
            (Some("es"), json!(12345.5), "EUR", "12.345,50\u{a0}€"),
            (Some("pt_BR"), json!(1234.5), "BRL", "R$\u{a0}1.234,50"),
            (Some("nl-NL"), json!(-1234.5), "EUR", "€\u{a0}-1.234,50"),
            (
                Some("sv-SE"),
                json!(-1234.5),
                "SEK",
                "\u{2212}1\u{a0}234,50\u{a0}kr",
            ),
            (Some("zh-Hant-TW"), json!(1234.5), "TWD", "$1,234.50"),
            // No locale, or one the table does not cover (Welsh): English.
            (None, json!(1234.5), "EUR", "€1,234.50"),
            (Some("cy-GB"), json!(1234.5), "EUR", "€1,234.50"),
            (Some("not a tag"), json!(1234.5), "EUR", "€1,234.50"),
            // Three digits for the dinars, none for the yen, whatever the locale.
            (None, json!(1.2345), "KWD", "KWD\u{a0}1.235"),
            (Some("de"), json!(1.2345), "BHD", "1,235\u{a0}BHD"),
            (Some("fr"), json!(1234.5), "JPY", "1\u{202f}235\u{a0}JPY"),
        ] {
            let event = json!({"total": total, "currency": code});
            assert_eq!(
                rendered(source, locale, event).as_deref(),
                Ok(want),
                "{locale:?} {total} {code}"
            );
        }
    }

    /// Rounded half away from zero, as the amount is written (not as its float would round:
    /// 2.675 is 2.67499… in binary, and `round(2)` gives 2.67); a negative amount keeps its
    /// sign in the locale's place, unless it rounds to zero.
    #[test]
    fn rounds_half_away_from_zero_and_writes_negative_amounts() {
        for (total, code, want) in [
            (json!(2.675), "EUR", "€2.68"),
            (json!(0.125), "USD", "$0.13"),
            (json!(0.124), "USD", "$0.12"),
            (json!(-0.125), "USD", "-$0.13"),
            (json!(2.5), "JPY", "¥3"),
            (json!(-2.5), "JPY", "-¥3"),
            (json!(9.995), "EUR", "€10.00"),
            (json!(999999.995), "EUR", "€1,000,000.00"),
            (json!(-0.001), "EUR", "€0.00"),
            (json!(-1234.5), "EUR", "-€1,234.50"),
            (json!(0), "EUR", "€0.00"),
            (json!(-7), "CHF", "-CHF\u{a0}7.00"),
            (json!(1e21), "USD", "$1,000,000,000,000,000,000,000.00"),
            (json!(u64::MAX), "USD", "$18,446,744,073,709,551,615.00"),
        ] {
            let event = json!({"total": total, "currency": code});
            let got = rendered("{{ event.total | currency(event.currency) }}", None, event);
            assert_eq!(got.as_deref(), Ok(want), "{total} {code}");
        }
        for (locale, want) in [("de-CH", "CHF-1'234.50"), ("de", "-1.234,50\u{a0}CHF")] {
            let got = rendered("{{ -1234.5 | currency('CHF') }}", Some(locale), json!({}));
            assert_eq!(got.as_deref(), Ok(want), "{locale}");
        }
    }

    /// As for every filter: a value the user or the event does not have prints nothing (and
    /// `default` sees it missing); a number sent as text is the number; anything else is an
    /// error that says what it was given.
    #[test]
    fn missing_values_print_nothing_and_text_is_read_as_a_number() {
        let source = "[{{ event.total | currency('EUR') }}]";
        assert_eq!(rendered(source, None, json!({})).as_deref(), Ok("[]"));
        assert_eq!(
            rendered(source, None, json!({"total": null})).as_deref(),
            Ok("[]")
        );
        assert_eq!(
            rendered(
                "{{ event.total | currency('EUR') | default('n/a') }}",
                None,
                json!({})
            )
            .as_deref(),
            Ok("n/a")
        );
        assert_eq!(
            rendered(source, Some("de"), json!({"total": "19.99"})).as_deref(),
            Ok("[19,99\u{a0}€]")
        );
        assert_eq!(
            rendered(source, None, json!({"total": " -5 "})).as_deref(),
            Ok("[-€5.00]")
        );
        for (total, why) in [
            (json!("soon"), "currency: soon (string) is not a number"),
            (json!("19,99"), "currency: 19,99 (string) is not a number"),
            (json!(true), "currency: True (bool) is not a number"),
            (json!([1]), "is not a number"),
        ] {
            let e = rendered(source, None, json!({ "total": total })).expect_err("not a number");
            assert!(e.contains(why), "{e}");
        }
    }

    /// A plain decimal sent as text is rounded as written, to the last digit, not through the
    /// float nearest it; only a number with an exponent is read as a float.
    #[test]
    fn an_amount_sent_as_text_is_rounded_as_written() {
        let source = "[{{ event.total | currency('EUR') }}]";
        for (total, want) in [
            ("2.6749999999999998", "[€2.67]"),
            ("2.675", "[€2.68]"),
            ("100000000000000000.5", "[€100,000,000,000,000,000.50]"),
            ("18446744073709551615", "[€18,446,744,073,709,551,615.00]"),
            (
                "123456789012345678901234567890.125",
                "[€123,456,789,012,345,678,901,234,567,890.13]",
            ),
            ("+5", "[€5.00]"),
            ("5.", "[€5.00]"),
            (".5", "[€0.50]"),
            ("-.5", "[-€0.50]"),
            (" 007.10 ", "[€7.10]"),
            ("-0.004", "[€0.00]"),
            ("1e3", "[€1,000.00]"),
            ("2.675E0", "[€2.68]"),
            ("-1.5e-1", "[-€0.15]"),
        ] {
            let got = rendered(source, None, json!({ "total": total }));
            assert_eq!(got.as_deref(), Ok(want), "{total:?}");
        }
        // The same number as JSON and as text prints the same.
        let number = rendered(source, None, json!({ "total": u64::MAX }));
        let text = rendered(source, None, json!({ "total": u64::MAX.to_string() }));
        assert_eq!(number, text);
        for total in [
            "", " ", ".", "+", "-", "+-5", "1.2.3", "1,5", "inf", "NaN", "1e400", "0x10",
        ] {
            let e = rendered(source, None, json!({ "total": total })).expect_err(total);
            assert!(e.contains("is not a number"), "{total:?}: {e}");
        }
    }

    /// The code in place or as `code=`, in any case; one the table does not know is printed as
    /// it is written, where the symbol goes, with 2 digits (the message still goes out); none
    /// (a missing `event.currency`) leaves the amount alone. `locale=` overrides the user's.
    #[test]
    fn the_code_and_the_locale_come_in_place_by_keyword_or_not_at_all() {
        let event = json!({"total": 1234.5, "currency": "eur", "odd": "XYZ", "words": "Euro"});
        for (source, locale, want) in [
            (
                "{{ event.total | currency(event.currency) }}",
                None,
                "€1,234.50",
            ),
            (
                "{{ event.total | currency(code='USD') }}",
                None,
                "$1,234.50",
            ),
            (
                "{{ event.total | currency(code=event.none) }}",
                None,
                "1,234.50",
            ),
            (
                "{{ event.total | currency('usd', locale='de-DE') }}",
                Some("en"),
                "1.234,50\u{a0}$",
            ),
            (
                "{{ event.total | currency('EUR', locale='fr') }}",
                Some("de"),
                "1\u{202f}234,50\u{a0}€",
            ),
            (
                "{{ event.total | currency('EUR', locale=profile.nothing) }}",
                Some("de"),
                "1.234,50\u{a0}€",
            ),
            (
                "{{ event.total | currency(event.odd) }}",
                None,
                "XYZ\u{a0}1,234.50",
            ),
            (
                "{{ event.total | currency(event.odd) }}",
                Some("de"),
                "1.234,50\u{a0}XYZ",
            ),
            (
                "{{ event.total | currency(event.words) }}",
                None,
                "Euro\u{a0}1,234.50",
            ),
            (
                "{{ event.total | currency(event.missing) }}",
                None,
                "1,234.50",
            ),
            (
                "{{ event.total | currency(event.missing) }}",
                Some("de"),
                "1.234,50",
            ),
            (
                "{{ event.total | currency(event.missing) }}",
                Some("fr"),
                "1\u{202f}234,50",
            ),
            (
                "{{ -1234.5 | currency(event.missing) }}",
                Some("nl"),
                "-1.234,50",
            ),
            ("{{ event.total | currency('') }}", None, "1,234.50"),
        ] {
            assert_eq!(
                rendered(source, locale, event.clone()).as_deref(),
                Ok(want),
                "{source}"
            );
        }
        for (source, why) in [
            (
                "{{ event.total | currency }}",
                "takes the currency's ISO 4217 code",
            ),
            (
                "{{ event.total | currency(5) }}",
                "its code is text like 'EUR', not 5",
            ),
            (
                "{{ event.total | currency('EUR', code='USD') }}",
                "given twice",
            ),
            (
                "{{ event.total | currency('EUR', locale=5) }}",
                "`locale=` is a tag",
            ),
            ("{{ event.total | currency('EUR', lang='de') }}", "lang"),
            // Whatever the value: the call itself is wrong.
            ("{{ event.missing | currency(5) }}", "not 5"),
        ] {
            let e = rendered(source, None, event.clone()).expect_err(source);
            assert!(e.contains(why), "{source}: {e}");
        }
    }

    /// No code leaves the amount alone in every locale: not the space or direction mark that
    /// kept the symbol apart (Hebrew writes `\u{200f}1,234.50\u{a0}\u{200f}₪`), whatever the sign.
    #[test]
    fn no_code_leaves_no_space_or_mark_where_the_symbol_was() {
        let source = "{{ event.total | currency(event.currency) }}";
        for (total, want) in [
            (json!(1234.5), "\u{200f}1,234.50"),
            (json!(-1234.5), "\u{200f}\u{200e}-1,234.50"),
        ] {
            let got = rendered(source, Some("he"), json!({ "total": total }));
            assert_eq!(got.as_deref(), Ok(want), "{total}");
        }
        let edge = |c: char| blank(&c.to_string());
        for l in data::LOCALES {
            for amount in ["1234.5", "-1234.5"] {
                let got = format(amount, &Code::Missing, l).expect("a decimal");
                assert!(
                    !got.ends_with(edge) && !got.starts_with(char::is_whitespace),
                    "{} {amount}: {got:?}",
                    l.tag
                );
            }
        }
    }

    /// `wordy` answers the signs and marks it knows without Unicode's tables: as the tables
    /// would, for every character.
    #[test]
    fn wordy_is_unicodes_answer() {
        let plain =
            |c: char| c.is_alphanumeric() || (c.is_ascii_punctuation() && !"$+<=>^`|~".contains(c));
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            assert_eq!(wordy(c), plain(c), "{c:?}");
        }
    }

    /// A float's digits are written as Rust prints them, with or without the text in between;
    /// an integer's as Rust prints it.
    #[test]
    fn numbers_are_read_as_rust_prints_them() {
        let mut floats = vec![
            0.0,
            -0.0,
            79.9,
            10.0,
            2.675,
            0.1,
            0.05,
            1e21,
            1e-7,
            9.995,
            1234.5,
            -1234.5,
            0.30000000000000004,
            1125899906842623.0,
            1125899906842624.0,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            123456.789,
            1e15 + 0.3,
            4503599627370495.5,
        ];
        floats.extend((-20_000..20_000).map(|i| f64::from(i) / 100.0));
        floats.extend((1..2_000).map(|i| f64::from(i) * 0.001 + 99.0));
        // Bits from a fixed sequence, of every size.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            floats.push(f64::from_bits(x));
            floats.push(f64::from_bits(x) / 1e300);
            floats.push((f64::from_bits(x >> 12) * 1e-6).fract() * 1e6);
        }
        for f in floats.into_iter().filter(|f| f.is_finite()) {
            let mut buf = [0; 40];
            if let Some(short) = short_decimal(f, &mut buf) {
                assert_eq!(short, format!("{f}"), "{:#x}", f.to_bits());
            }
        }
        assert!(short_decimal(79.9, &mut [0; 40]).is_some());
        assert!(short_decimal(f64::INFINITY, &mut [0; 40]).is_none());
        for i in [
            0,
            7,
            -7,
            10,
            i128::from(u64::MAX),
            i128::from(i64::MIN),
            i128::MAX,
            i128::MIN,
        ] {
            assert_eq!(int_decimal(i, &mut [0; 40]), i.to_string());
        }
    }

    fn show(amount: f64, code: &str, tag: &str) -> String {
        let text = decimal_of_f64(amount).expect("finite");
        format(&text, &Code::Text(code), locale(Some(tag))).expect("a decimal")
    }

    /// The generated tables are searched by halves: each must be in order, and every alias
    /// must name a covered locale (English, the fallback, among them).
    #[test]
    fn the_tables_are_in_order_and_complete() {
        let ordered = |keys: Vec<&str>| keys.windows(2).all(|w| w[0] < w[1]);
        assert!(ordered(data::CODES.to_vec()));
        assert!(data::CODES.iter().all(|c| c.len() == 3));
        assert!(ordered(data::ALIASES.iter().map(|(a, _)| *a).collect()));
        assert!(ordered(data::LOCALES.iter().map(|l| l.tag).collect()));
        assert!(data::ALIASES.iter().all(|(_, to)| covered(to).is_some()));
        assert!(data::LOCALES
            .iter()
            .flat_map(|l| l.formats)
            .all(|(code, like)| known(code) && covered(like).is_some()));
        // Each locale inherits symbols from a covered one, and the chain ends in English.
        for l in data::LOCALES {
            let chain: Vec<&str> = std::iter::successors(Some(l), |l| covered(l.inherits))
                .take(data::LOCALES.len() + 1)
                .map(|l| l.tag)
                .collect();
            assert!(chain.len() <= data::LOCALES.len(), "{chain:?}");
            let last = chain.last().and_then(|t| covered(t)).map(|l| l.inherits);
            assert_eq!(last, Some(""), "{chain:?}");
        }
        assert_eq!(locale(None).tag, "en");
        assert!(data::DIGITS.iter().all(|(c, _)| known(c)));
        for l in data::LOCALES {
            assert_eq!(locale(Some(l.tag)).tag, l.tag);
            for pattern in [l.positive, l.negative] {
                assert_eq!(
                    pattern.iter().filter(|p| **p == Part::Number).count(),
                    1,
                    "{}",
                    l.tag
                );
                assert_eq!(
                    pattern.iter().filter(|p| **p == Part::Symbol).count(),
                    1,
                    "{}",
                    l.tag
                );
            }
        }
        // Shortened part by part, in any case and with `_`.
        assert_eq!(locale(Some("DE_at")).tag, "de-at");
        assert_eq!(locale(Some("de-LU")).tag, "de");
        assert_eq!(locale(Some("zh-Hant-TW")).tag, "zh-tw");
        assert_eq!(locale(Some("zh-Hant-HK")).tag, "zh-hk");
        assert_eq!(locale(Some("no-NO")).tag, "nb");
        assert_eq!(locale(Some("ar-KW")).tag, "en");
    }

    /// A region writes money as CLDR has it there, not as its language's default: Latin
    /// America, Africa's Portuguese, English outside England, each region's own symbol; and
    /// English of Europe writes euros as English does but other money its own way.
    #[test]
    fn a_region_writes_money_as_cldr_writes_it_there() {
        for (tag, code, amount, want) in [
            ("es-PE", "PEN", 1234.5, "S/\u{a0}1,234.50"),
            ("es-PR", "USD", 1234.5, "$1,234.50"),
            ("es-EC", "USD", 1234.5, "$1.234,50"),
            ("es-419", "USD", 1234.5, "USD\u{a0}1,234.50"),
            ("pt-AO", "AOA", 1234.5, "1\u{a0}234,50\u{a0}Kz"),
            ("pt-MZ", "MZN", 1234.5, "1234,50\u{a0}MTn"),
            ("pt-CH", "CHF", 1234.5, "1234,50\u{a0}CHF"),
            ("en-HK", "USD", 1234.5, "US$1,234.50"),
            ("en-NG", "USD", 1234.5, "US$1,234.50"),
            ("en-NG", "NGN", 1234.5, "\u{20a6}1,234.50"),
            ("en-DE", "USD", 1234.5, "US$1,234.50"),
            ("fr-LU", "EUR", 1234.5, "1.234,50\u{a0}\u{20ac}"),
            ("fr-MA", "MAD", 1234.5, "1.234,50\u{a0}MAD"),
            ("de-LI", "CHF", 1234.5, "CHF\u{a0}1'234.50"),
            ("ru-UA", "UAH", 1234.5, "1234,50\u{a0}\u{20b4}"),
            ("en-SE", "SEK", -1234.5, "-1\u{a0}234,50\u{a0}kr"),
            ("en-150", "EUR", 1234.5, "\u{20ac}1,234.50"),
            ("en-150", "USD", 1234.5, "1,234.50\u{a0}US$"),
            ("en-CH", "EUR", -1234.5, "-\u{20ac}1,234.50"),
            ("zh-Hans-SG", "SGD", 1234.5, "$1,234.50"),
            ("es_PE.UTF-8", "PEN", 1234.5, "S/\u{a0}1,234.50"),
        ] {
            assert_eq!(show(amount, code, tag), want, "{tag} {code} {amount}");
        }
    }

    /// A device or server may give a POSIX locale: its charset and modifier are cut before the
    /// region is read, so `de_CH.UTF-8` is Swiss German, not German; `waymark validate` takes
    /// such a tag as the filter does.
    #[test]
    fn a_posix_locale_keeps_its_region() {
        for (tag, want) in [
            ("de_CH.UTF-8", "de-ch"),
            ("en_IN.UTF-8", "en-in"),
            ("de-CH@euro", "de-ch"),
            ("de_AT.ISO8859-15@euro", "de-at"),
            (" fr_CA.utf8 ", "fr-ca"),
            ("de_DE.UTF-8", "de"),
            ("C.UTF-8", "en"),
            ("@euro", "en"),
        ] {
            assert_eq!(locale(Some(tag)).tag, want, "{tag}");
        }
        let got = rendered(
            "{{ 1234.5 | currency('CHF') }}",
            Some("de_CH.UTF-8"),
            json!({}),
        );
        assert_eq!(got.as_deref(), Ok("CHF\u{a0}1'234.50"));
        assert_eq!(locale_problem("currency", "de_CH.UTF-8"), None);
        assert_eq!(locale_problem("currency", "de-CH@euro"), None);
        assert!(locale_problem("currency", "German").is_some());
    }

    /// What CLDR's own formatter (ICU, with rounding half away from zero) prints, for every
    /// covered locale and its aliases, a dozen currencies and amounts that round, group and go
    /// negative (`cases.txt`, generated with the table).
    #[test]
    fn formats_as_cldr_does() {
        // `WAYMARK_CURRENCY_CASES` names a larger file of the same form, to check more once.
        let more = std::env::var("WAYMARK_CURRENCY_CASES")
            .ok()
            .map(|path| std::fs::read_to_string(path).expect("the cases file"));
        let cases = more
            .as_deref()
            .unwrap_or(include_str!("currency/cases.txt"));
        let mut checked = 0;
        let mut wrong = Vec::new();
        for line in cases.lines().filter(|l| !l.starts_with('#')) {
            let mut cols = line.split('\t');
            let (Some(tag), Some(code), Some(amount), Some(want)) =
                (cols.next(), cols.next(), cols.next(), cols.next())
            else {
                panic!("a case has four columns: {line:?}");
            };
            let amount: f64 = amount.parse().expect("an amount");
            let got = show(amount, code, tag);
            if got != want {
                wrong.push(format!("{tag} {code} {amount}: {got:?}, not {want:?}"));
            }
            checked += 1;
        }
        assert!(checked > 1_000, "{checked}");
        assert!(
            wrong.is_empty(),
            "{} wrong:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }
}
