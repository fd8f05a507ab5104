//! Tokens of a LaTeX-ish answer. The lexer folds the many spellings of one symbol (`\cdot`,
//! `\times`, `×`; `\le`, `\leqslant`, `≤`; …) into one token so the parser stays small.

/// One lexical unit of an answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// Decimal literal as written (digits, at most one `.`), exponent already folded in.
    Num(String),
    /// A single-letter (or Greek) identifier.
    Ident(String),
    /// A LaTeX command with its name (no backslash) that the parser interprets.
    Cmd(String),
    /// Text from `\text{…}`, `\mathrm{…}` and friends.
    Word(String),
    LParen,
    RParen,
    LBrack,
    RBrack,
    LBrace,
    RBrace,
    LSet,
    RSet,
    Plus,
    Minus,
    Star,
    Slash,
    Caret,
    Underscore,
    Comma,
    Semicolon,
    Bang,
    Pipe,
    Amp,
    RowSep,
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
    Ne,
    Pm,
    Percent,
    Colon,
}

/// Commands whose argument is text rather than math.
const TEXT_COMMANDS: [&str; 10] = [
    "text",
    "textbf",
    "textit",
    "textrm",
    "mathrm",
    "mathbf",
    "mathit",
    "mbox",
    "operatorname",
    "textnormal",
];

/// Commands that only change appearance and are dropped.
const IGNORED_COMMANDS: [&str; 22] = [
    "left",
    "right",
    "displaystyle",
    "quad",
    "qquad",
    "bigl",
    "bigr",
    "Bigl",
    "Bigr",
    "big",
    "Big",
    "bigg",
    "Bigg",
    "circ",
    "degree",
    "mathstrut",
    "limits",
    "middle",
    "textstyle",
    "boldsymbol",
    "mathbb",
    "hfill",
];

/// Commands that models glue to the next letter (`\quadx`); matched only for unknown names.
const GLUED_PREFIXES: [&str; 6] = ["qquad", "quad", "cdot", "times", "pi", "infty"];

/// Splits `s` into tokens; `None` for characters that have no meaning in an answer.
pub(crate) fn lex(s: &str) -> Option<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' | '~' | '$' => {}
            '0'..='9' | '.' => {
                let start = i;
                let mut seen_dot = false;
                while i < chars.len()
                    && (chars[i].is_ascii_digit() || (chars[i] == '.' && !seen_dot))
                {
                    if chars[i] == '.' {
                        // `3.` at the end of a sentence, or `1..5`, is not a decimal point.
                        if !(i + 1 < chars.len() && chars[i + 1].is_ascii_digit()) {
                            break;
                        }
                        seen_dot = true;
                    }
                    i += 1;
                }
                if i == start {
                    // A lone `.`: punctuation, ignored.
                    i += 1;
                    continue;
                }
                let text: String = chars[start..i].iter().collect();
                // `1.5e3` is 1.5·e·3 here, as in Math-Verify: `e` is Euler's number.
                out.push(Tok::Num(text));
                continue;
            }
            'a'..='z' | 'A'..='Z' => out.push(Tok::Ident(c.to_string())),
            '(' => out.push(Tok::LParen),
            ')' => out.push(Tok::RParen),
            '[' => out.push(Tok::LBrack),
            ']' => out.push(Tok::RBrack),
            '{' => out.push(Tok::LBrace),
            '}' => out.push(Tok::RBrace),
            '+' => out.push(Tok::Plus),
            '-' | '−' | '–' => out.push(Tok::Minus),
            '*' | '×' | '·' | '⋅' => out.push(Tok::Star),
            '/' | '÷' => out.push(Tok::Slash),
            '^' => out.push(Tok::Caret),
            '_' => out.push(Tok::Underscore),
            ',' => out.push(Tok::Comma),
            ';' => out.push(Tok::Semicolon),
            '!' => out.push(Tok::Bang),
            '|' => out.push(Tok::Pipe),
            '&' => out.push(Tok::Amp),
            '=' => out.push(Tok::Eq),
            '<' => out.push(Tok::Lt),
            '>' => out.push(Tok::Gt),
            ':' => out.push(Tok::Colon),
            '%' => out.push(Tok::Percent),
            '≤' => out.push(Tok::Le),
            '≥' => out.push(Tok::Ge),
            '≠' => out.push(Tok::Ne),
            '±' | '∓' => out.push(Tok::Pm),
            'π' => out.push(Tok::Cmd("pi".into())),
            '∞' => out.push(Tok::Cmd("infty".into())),
            '√' => out.push(Tok::Cmd("sqrt".into())),
            '∪' => out.push(Tok::Cmd("cup".into())),
            '∈' => out.push(Tok::Cmd("in".into())),
            '°' | '\'' | '"' | '′' => {}
            '\\' => {
                i += 1;
                if i >= chars.len() {
                    return None;
                }
                let c2 = chars[i];
                if !c2.is_ascii_alphabetic() {
                    match c2 {
                        '{' => out.push(Tok::LSet),
                        '}' => out.push(Tok::RSet),
                        '\\' => out.push(Tok::RowSep),
                        '%' => out.push(Tok::Percent),
                        '|' => out.push(Tok::Pipe),
                        '$' | ',' | ';' | ':' | '!' | ' ' | '>' | '(' | ')' | '[' | ']' => {}
                        _ => return None,
                    }
                    i += 1;
                    continue;
                }
                let start = i;
                while i < chars.len() && chars[i].is_ascii_alphabetic() {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if TEXT_COMMANDS.contains(&name.as_str()) {
                    // `\text{…}` (also with the star form `\operatorname*`).
                    while i < chars.len() && (chars[i] == ' ' || chars[i] == '*') {
                        i += 1;
                    }
                    if i < chars.len() && chars[i] == '{' {
                        let close = match_brace(&chars, i)?;
                        let body: String = chars[i + 1..close].iter().collect();
                        let mathy = !body.trim().is_empty()
                            && !body.chars().any(char::is_alphabetic)
                            && !body.contains('\\');
                        match lex(&body) {
                            // `\text{5/2}` is the number 5/2, not a word.
                            Some(inner) if mathy => out.extend(inner),
                            _ => out.push(Tok::Word(body.trim().to_string())),
                        }
                        i = close + 1;
                    } else if i < chars.len() {
                        out.push(Tok::Word(chars[i].to_string()));
                        i += 1;
                    }
                    continue;
                }
                if IGNORED_COMMANDS.contains(&name.as_str()) {
                    continue;
                }
                // `\quadx`, `\cdotx`: a known command glued to a letter.
                if let Some(known) = GLUED_PREFIXES
                    .iter()
                    .find(|k| name.len() > k.len() && name.starts_with(**k) && name != "cdots")
                {
                    i -= name.len() - known.len();
                    if IGNORED_COMMANDS.contains(known) {
                        continue;
                    }
                    out.push(match *known {
                        "cdot" | "times" => Tok::Star,
                        k => Tok::Cmd(k.to_string()),
                    });
                    continue;
                }
                let tok = match name.as_str() {
                    "cdot" | "times" | "ast" => Tok::Star,
                    "div" => Tok::Slash,
                    "pm" | "mp" => Tok::Pm,
                    "le" | "leq" | "leqslant" | "leqq" => Tok::Le,
                    "ge" | "geq" | "geqslant" | "geqq" => Tok::Ge,
                    "lt" => Tok::Lt,
                    "gt" => Tok::Gt,
                    "ne" | "neq" => Tok::Ne,
                    "approx" | "simeq" | "equiv" => Tok::Eq,
                    "lbrace" => Tok::LSet,
                    "rbrace" => Tok::RSet,
                    "langle" | "lparen" => Tok::LParen,
                    "rangle" | "rparen" => Tok::RParen,
                    "lbrack" => Tok::LBrack,
                    "rbrack" => Tok::RBrack,
                    "vert" | "lvert" | "rvert" | "mid" => Tok::Pipe,
                    "dfrac" | "tfrac" | "cfrac" => Tok::Cmd("frac".into()),
                    "dbinom" | "tbinom" => Tok::Cmd("binom".into()),
                    "colon" => Tok::Colon,
                    "land" | "wedge" => Tok::Comma,
                    _ => Tok::Cmd(name),
                };
                out.push(tok);
                continue;
            }
            _ if c.is_alphabetic() => out.push(Tok::Ident(c.to_string())),
            _ => return None,
        }
        i += 1;
    }
    split_digit_arguments(&mut out);
    Some(out)
}

/// `\frac12` means `\frac{1}{2}` and `\sqrt23` means `\sqrt{2}3`: a bare digit run used as
/// a command argument gives up only its first digit. Linear: braces are matched once.
fn split_digit_arguments(toks: &mut Vec<Tok>) {
    let mut partner = vec![usize::MAX; toks.len()];
    let mut stack = Vec::new();
    for (k, t) in toks.iter().enumerate() {
        match t {
            Tok::LBrace => stack.push(k),
            Tok::RBrace => {
                if let Some(open) = stack.pop() {
                    partner[open] = k;
                }
            }
            _ => {}
        }
    }
    // Leading digits peeled off each number token as separate one-digit arguments.
    let mut peel = vec![0usize; toks.len()];
    for i in 0..toks.len() {
        let nargs = match &toks[i] {
            Tok::Cmd(c) if c == "frac" || c == "binom" => 2,
            Tok::Cmd(c) if c == "sqrt" => 1,
            _ => continue,
        };
        let mut j = i + 1;
        for _ in 0..nargs {
            match toks.get(j) {
                Some(Tok::LBrace) => match partner[j] {
                    usize::MAX => break,
                    close => j = close + 1,
                },
                Some(Tok::Num(n))
                    if n.len() > peel[j] + 1 && n.chars().all(|c| c.is_ascii_digit()) =>
                {
                    peel[j] += 1;
                }
                Some(_) => j += 1,
                None => break,
            }
        }
    }
    if peel.iter().all(|&p| p == 0) {
        return;
    }
    let old = std::mem::take(toks);
    for (t, p) in old.into_iter().zip(peel) {
        match t {
            Tok::Num(n) if p > 0 => {
                toks.extend(n[..p].chars().map(|c| Tok::Num(c.to_string())));
                toks.push(Tok::Num(n[p..].to_string()));
            }
            t => toks.push(t),
        }
    }
}

/// Index of the `}` matching the `{` at `open`.
fn match_brace(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}
