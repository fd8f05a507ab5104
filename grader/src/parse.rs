//! Recursive-descent parser from tokens to [`Answer`]: the answer level (lists, sets, tuples,
//! intervals, unions, matrices, relations); scalars are in `parse_expr`. Depth-limited; fails
//! (returns `None`) instead of guessing when the structure is broken.

use crate::ast::{Answer, Expr, RelOp};
use crate::lexer::Tok;

/// Deepest nesting accepted; deeper input is rejected rather than risking the stack.
const MAX_DEPTH: usize = 200;
/// Most tokens accepted in one answer.
pub(crate) const MAX_TOKENS: usize = 6000;

/// Parser state shared by the answer and expression levels.
pub(crate) struct Parser {
    pub(crate) toks: Vec<Tok>,
    pub(crate) pos: usize,
    pub(crate) depth: usize,
    /// Open `|…|` groups: inside one, `|` closes instead of starting a factor.
    pub(crate) abs_depth: usize,
}

/// Parses a whole answer; `None` when the tokens do not form one.
pub(crate) fn parse_answer(toks: Vec<Tok>) -> Option<Answer> {
    if toks.is_empty() || toks.len() > MAX_TOKENS {
        return None;
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
        abs_depth: 0,
    };
    let a = p.list()?;
    if p.pos != p.toks.len() {
        return None;
    }
    Some(a)
}

/// "and"/"or" words that separate list items.
pub(crate) fn is_separator_word(t: &Tok) -> bool {
    matches!(t, Tok::Word(w) if matches!(w.to_ascii_lowercase().as_str(), "and" | "or" | "," | ""))
}

impl Parser {
    pub(crate) fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    pub(crate) fn peek_at(&self, k: usize) -> Option<&Tok> {
        self.toks.get(self.pos + k)
    }

    pub(crate) fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            None
        } else {
            Some(())
        }
    }

    pub(crate) fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Top level: items separated by `,`/`;`/"and"/"or".
    fn list(&mut self) -> Option<Answer> {
        let mut items = vec![self.union()?];
        // Indices of items that follow a `;`.
        let mut after_semicolon = Vec::new();
        loop {
            let sep = matches!(self.peek(), Some(Tok::Comma | Tok::Semicolon))
                || self.peek().is_some_and(is_separator_word);
            if !sep {
                break;
            }
            let mut semi = false;
            while matches!(self.peek(), Some(Tok::Comma | Tok::Semicolon))
                || self.peek().is_some_and(is_separator_word)
            {
                semi |= self.peek() == Some(&Tok::Semicolon);
                self.pos += 1;
            }
            if self.peek().is_none() {
                break;
            }
            if semi {
                after_semicolon.push(items.len());
            }
            items.push(self.union()?);
        }
        if let Some(groups) = assignment_groups(&items, &after_semicolon) {
            return Some(Answer::List(groups));
        }
        Some(if items.len() == 1 {
            items.pop()?
        } else {
            Answer::List(items)
        })
    }

    /// `A \cup B \cup …`.
    pub(crate) fn union(&mut self) -> Option<Answer> {
        let first = self.item()?;
        if !matches!(self.peek(), Some(Tok::Cmd(c)) if c == "cup") {
            return Some(first);
        }
        let mut parts = vec![first];
        while matches!(self.peek(), Some(Tok::Cmd(c)) if c == "cup") {
            self.pos += 1;
            parts.push(self.item()?);
        }
        Some(Answer::Union(parts))
    }

    /// One value: a set, interval/tuple, matrix, relation chain or expression.
    pub(crate) fn item(&mut self) -> Option<Answer> {
        self.enter()?;
        let r = self.item_inner();
        self.leave();
        r
    }

    fn item_inner(&mut self) -> Option<Answer> {
        // `x \in S`: the answer is S.
        if matches!(self.peek(), Some(Tok::Ident(_)))
            && matches!(self.peek_at(1), Some(Tok::Cmd(c)) if c == "in")
        {
            self.pos += 2;
            return self.union();
        }
        match self.peek() {
            Some(Tok::LSet) => return self.set_literal(),
            Some(Tok::LBrace) => {
                // `{1, 2, 3}` written without escaped braces is a set too.
                let start = self.pos;
                if let Some(set) = self.brace_set() {
                    return Some(set);
                }
                self.pos = start;
            }
            Some(Tok::Cmd(c)) if c == "emptyset" || c == "varnothing" => {
                self.pos += 1;
                return Some(Answer::Set(Vec::new()));
            }
            Some(Tok::Cmd(c)) if c == "begin" => return self.matrix_expr(None),
            _ => {}
        }
        let start = self.pos;
        if let Some(e) = self.try_expr() {
            if self.at_item_end() {
                return Some(Answer::Expr(e));
            }
            // `2 \begin{pmatrix}…`: a scalar times a matrix.
            if matches!(self.peek(), Some(Tok::Cmd(c)) if c == "begin") {
                let save = self.pos;
                if let Some(m) = self.matrix_expr(Some(e.clone())) {
                    return Some(m);
                }
                self.pos = save;
            }
            // `D = (0, 1)`, `P = \{a, b\}`: a name for a collection; the collection is the
            // answer (Math-Verify unwraps such assignments).
            if matches!(e, Expr::Var(_)) && self.peek() == Some(&Tok::Eq) {
                let save = self.pos;
                self.pos += 1;
                if matches!(
                    self.peek(),
                    Some(Tok::LSet | Tok::LParen | Tok::LBrack | Tok::LBrace)
                ) {
                    if let Some(c) = self.union() {
                        if !matches!(c, Answer::Expr(_)) && self.at_item_end() {
                            return Some(c);
                        }
                    }
                }
                self.pos = save;
            }
            if let Some(op) = self.rel_op() {
                let mut exprs = vec![e];
                let mut ops = vec![op];
                loop {
                    exprs.push(self.expr()?);
                    match self.rel_op() {
                        Some(op) => ops.push(op),
                        None => break,
                    }
                }
                return Some(Answer::Rel(exprs, ops));
            }
        }
        self.pos = start;
        if matches!(self.peek(), Some(Tok::LParen | Tok::LBrack | Tok::RBrack)) {
            let group = self.bracket_group()?;
            // `(x, y) = (5, 8)`: named coordinates; the values are the answer.
            if self.peek() == Some(&Tok::Eq) {
                if let Answer::Tuple(names) = &group {
                    if names
                        .iter()
                        .all(|n| matches!(n, Answer::Expr(Expr::Var(_))))
                    {
                        self.pos += 1;
                        return self.union();
                    }
                }
            }
            return Some(group);
        }
        None
    }

    /// `{a, b, …}` with at least one comma (a braced single value is just grouping).
    fn brace_set(&mut self) -> Option<Answer> {
        self.pos += 1;
        let mut items = vec![self.union()?];
        while self.eat(&Tok::Comma) || self.eat(&Tok::Semicolon) {
            items.push(self.union()?);
        }
        if items.len() < 2 || !self.eat(&Tok::RBrace) {
            return None;
        }
        Some(Answer::Set(items))
    }

    fn try_expr(&mut self) -> Option<Expr> {
        let start = self.pos;
        let saved_depth = self.depth;
        let saved_abs = self.abs_depth;
        match self.expr() {
            Some(e) => Some(e),
            None => {
                self.pos = start;
                self.depth = saved_depth;
                self.abs_depth = saved_abs;
                None
            }
        }
    }

    pub(crate) fn at_item_end(&self) -> bool {
        match self.peek() {
            None => true,
            Some(
                Tok::Comma | Tok::Semicolon | Tok::RParen | Tok::RBrack | Tok::RSet | Tok::RBrace,
            ) => true,
            Some(Tok::Cmd(c)) => c == "cup",
            Some(t) => is_separator_word(t),
        }
    }

    pub(crate) fn rel_op(&mut self) -> Option<RelOp> {
        if self.peek() == Some(&Tok::Bang) && self.peek_at(1) == Some(&Tok::Eq) {
            self.pos += 2;
            return Some(RelOp::Ne);
        }
        let op = match self.peek()? {
            Tok::Eq => RelOp::Eq,
            Tok::Ne => RelOp::Ne,
            Tok::Lt => RelOp::Lt,
            Tok::Le => RelOp::Le,
            Tok::Gt => RelOp::Gt,
            Tok::Ge => RelOp::Ge,
            _ => return None,
        };
        self.pos += 1;
        // `<=` / `>=` written with two characters.
        if self.eat(&Tok::Eq) {
            return Some(match op {
                RelOp::Lt => RelOp::Le,
                RelOp::Gt => RelOp::Ge,
                o => o,
            });
        }
        Some(op)
    }

    /// `\{a, b\}`.
    fn set_literal(&mut self) -> Option<Answer> {
        self.pos += 1;
        let mut items = Vec::new();
        if self.eat(&Tok::RSet) {
            return Some(Answer::Set(items));
        }
        loop {
            items.push(self.union()?);
            if self.eat(&Tok::RSet) {
                return Some(Answer::Set(items));
            }
            if !(self.eat(&Tok::Comma) || self.eat(&Tok::Semicolon)) {
                return None;
            }
        }
    }

    /// `(a, b, …)`, `[a, b)`, `]a, b[`: tuples and intervals.
    pub(crate) fn bracket_group(&mut self) -> Option<Answer> {
        self.enter()?;
        let r = self.bracket_inner();
        self.leave();
        r
    }

    fn bracket_inner(&mut self) -> Option<Answer> {
        let open = self.peek()?.clone();
        self.pos += 1;
        let mut items = Vec::new();
        let close;
        loop {
            items.push(self.union()?);
            match self.peek() {
                Some(Tok::Comma | Tok::Semicolon) => self.pos += 1,
                Some(t @ (Tok::RParen | Tok::RBrack | Tok::LBrack)) => {
                    close = t.clone();
                    self.pos += 1;
                    break;
                }
                _ => return None,
            }
        }
        let lo_closed = open == Tok::LBrack;
        let hi_closed = close == Tok::RBrack;
        if items.len() == 1 {
            // `(expr)` that was not an expression on its own (e.g. `(x = 1)`), or a matrix in
            // brackets (`\left[\begin{array}…\end{array}\right]`).
            let paren = open == Tok::LParen && close == Tok::RParen;
            let bracket = open == Tok::LBrack && close == Tok::RBrack;
            return match items.pop()? {
                m @ Answer::Matrix(_) if paren || bracket => Some(m),
                other if paren => Some(other),
                _ => None,
            };
        }
        if open == Tok::LParen && close == Tok::RParen {
            return Some(Answer::Tuple(items));
        }
        if items.len() == 2 {
            let hi = items.pop()?;
            let lo = items.pop()?;
            if let (Answer::Expr(lo), Answer::Expr(hi)) = (lo, hi) {
                return Some(Answer::Interval {
                    lo,
                    hi,
                    lo_closed,
                    hi_closed,
                });
            }
            return None;
        }
        if open == Tok::LBrack && close == Tok::RBrack {
            return Some(Answer::Tuple(items));
        }
        None
    }

    /// `\begin{pmatrix} a & b \\ c & d \end{pmatrix}` (any matrix environment).
    pub(crate) fn matrix(&mut self) -> Option<Answer> {
        self.pos += 1;
        let env = self.env_name()?;
        if !env.ends_with("matrix") && env != "array" {
            return None;
        }
        if env == "array" {
            // Column spec `{cc}`.
            if self.peek() == Some(&Tok::LBrace) {
                self.env_name()?;
            }
        }
        let mut rows: Vec<Vec<Expr>> = vec![Vec::new()];
        loop {
            if matches!(self.peek(), Some(Tok::Cmd(c)) if c == "end") {
                self.pos += 1;
                self.env_name()?;
                break;
            }
            let e = self.expr()?;
            rows.last_mut()?.push(e);
            match self.peek() {
                Some(Tok::Amp) => self.pos += 1,
                Some(Tok::RowSep) => {
                    self.pos += 1;
                    rows.push(Vec::new());
                }
                Some(Tok::Cmd(c)) if c == "end" => {}
                _ => return None,
            }
        }
        if rows.last().is_some_and(Vec::is_empty) {
            rows.pop();
        }
        let width = rows.first()?.len();
        if width == 0 || rows.iter().any(|r| r.len() != width) {
            return None;
        }
        Some(Answer::Matrix(rows))
    }

    /// `{name}` made of letters and `*`.
    fn env_name(&mut self) -> Option<String> {
        if !self.eat(&Tok::LBrace) {
            return None;
        }
        let mut name = String::new();
        while let Some(Tok::Ident(c)) = self.peek() {
            name.push_str(c);
            self.pos += 1;
        }
        self.eat(&Tok::Star);
        if !self.eat(&Tok::RBrace) {
            return None;
        }
        Some(name)
    }
}

/// `p=5,q=2;p=7,q=2`: `;`-separated groups of assignments are the tuples `(5,2),(7,2)`.
fn assignment_groups(items: &[Answer], after_semicolon: &[usize]) -> Option<Vec<Answer>> {
    if after_semicolon.is_empty() {
        return None;
    }
    let mut bounds = vec![0];
    bounds.extend_from_slice(after_semicolon);
    bounds.push(items.len());
    let mut groups = Vec::new();
    for w in bounds.windows(2) {
        let group = &items[w[0]..w[1]];
        if group.len() < 2 {
            return None;
        }
        let values = group
            .iter()
            .map(|a| match a {
                Answer::Rel(es, ops) if ops.len() == 1 && ops[0] == RelOp::Eq => {
                    matches!(es[0], Expr::Var(_)).then(|| Answer::Expr(es[1].clone()))
                }
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        groups.push(Answer::Tuple(values));
    }
    Some(groups)
}
