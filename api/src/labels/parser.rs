//! The lexer and recursive-descent parser for the `?labelSelector=` string syntax, following
//! the grammar (and the error wording) of Kubernetes' `labels.Parse`:
//!
//! ```text
//! selector    ::= requirement | requirement "," selector
//! requirement ::= ["!"] KEY [ set-based | exact-match ]
//! set-based   ::= ("in" | "notin") "(" VALUE {"," VALUE} ")"
//! exact-match ::= ("=" | "==" | "!=" | ">" | "<") VALUE
//! ```

use std::collections::BTreeSet;

use super::{check_key, LabelSelectorError, Operator, Requirement};

/// Parses a selector string into its requirements, in the order written.
pub(super) fn parse(selector: &str) -> Result<Vec<Requirement>, LabelSelectorError> {
    Parser::new(selector).parse()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    End,
    OpenPar,
    ClosedPar,
    Comma,
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    In,
    NotIn,
    Identifier,
}

/// Whether `in`/`notin` are operators here or plain words (a value may be called "in").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

/// Splits the selector into tokens; identifiers run up to whitespace or a special symbol.
fn lex(input: &str) -> Vec<(Token, &str)> {
    let mut tokens = Vec::new();
    let mut rest = input;
    loop {
        rest = rest.trim_start_matches(is_whitespace);
        let Some(first) = rest.chars().next() else {
            tokens.push((Token::End, ""));
            return tokens;
        };
        let len = if is_special(first) {
            if rest.starts_with("!=") || rest.starts_with("==") {
                2
            } else {
                1
            }
        } else {
            rest.find(|c| is_whitespace(c) || is_special(c))
                .unwrap_or(rest.len())
        };
        let (literal, tail) = rest.split_at(len);
        let token = match literal {
            "(" => Token::OpenPar,
            ")" => Token::ClosedPar,
            "," => Token::Comma,
            "!" => Token::Not,
            "=" => Token::Equals,
            "==" => Token::DoubleEquals,
            "!=" => Token::NotEquals,
            ">" => Token::GreaterThan,
            "<" => Token::LessThan,
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Identifier,
        };
        tokens.push((token, literal));
        rest = tail;
    }
}

/// A recursive-descent parser following the grammar of Kubernetes' `labels.Parse`.
struct Parser<'a> {
    selector: &'a str,
    tokens: Vec<(Token, &'a str)>,
    position: usize,
}

impl<'a> Parser<'a> {
    fn new(selector: &'a str) -> Self {
        Parser {
            selector,
            tokens: lex(selector),
            position: 0,
        }
    }

    fn lookahead(&self, context: Context) -> (Token, &'a str) {
        // The token list always ends with End, and consume never moves past it.
        let (token, literal) = self
            .tokens
            .get(self.position)
            .copied()
            .unwrap_or((Token::End, ""));
        match token {
            Token::In | Token::NotIn if context == Context::Values => (Token::Identifier, literal),
            _ => (token, literal),
        }
    }

    fn consume(&mut self, context: Context) -> (Token, &'a str) {
        let item = self.lookahead(context);
        if item.0 != Token::End {
            self.position += 1;
        }
        item
    }

    fn syntax(&self, token: Token, literal: &str, expected: &'static str) -> LabelSelectorError {
        LabelSelectorError::Syntax {
            selector: self.selector.to_owned(),
            found: if token == Token::End {
                "end of string".to_owned()
            } else {
                format!("{literal:?}")
            },
            expected,
        }
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, LabelSelectorError> {
        let mut requirements = Vec::new();
        loop {
            match self.lookahead(Context::Values) {
                (Token::Identifier | Token::Not, _) => {
                    requirements.push(self.parse_requirement()?);
                    match self.consume(Context::Values) {
                        (Token::End, _) => return Ok(requirements),
                        (Token::Comma, _) => match self.lookahead(Context::Values) {
                            (Token::Identifier | Token::Not, _) => {}
                            (t, l) => return Err(self.syntax(t, l, "identifier after ','")),
                        },
                        (t, l) => return Err(self.syntax(t, l, "',' or 'end of string'")),
                    }
                }
                (Token::End, _) => return Ok(requirements),
                (t, l) => return Err(self.syntax(t, l, "!, identifier, or 'end of string'")),
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, LabelSelectorError> {
        let mut negated = false;
        let (mut token, mut key) = self.consume(Context::Values);
        if token == Token::Not {
            negated = true;
            (token, key) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(self.syntax(token, key, "identifier"));
        }
        check_key(key)?;
        let next = self.lookahead(Context::Values).0;
        if negated {
            // Whatever follows "!key" must be ',' or the end; parse() reports anything else.
            return Requirement::new(key, Operator::DoesNotExist, Vec::new());
        }
        if matches!(next, Token::End | Token::Comma) {
            return Requirement::new(key, Operator::Exists, Vec::new());
        }
        let operator = match self.consume(Context::KeyAndOperator) {
            (Token::In, _) => Operator::In,
            (Token::NotIn, _) => Operator::NotIn,
            (Token::Equals, _) => Operator::Equals,
            (Token::DoubleEquals, _) => Operator::DoubleEquals,
            (Token::NotEquals, _) => Operator::NotEquals,
            (Token::GreaterThan, _) => Operator::GreaterThan,
            (Token::LessThan, _) => Operator::LessThan,
            (t, l) => return Err(self.syntax(t, l, "in, notin, =, ==, !=, gt, lt")),
        };
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(key, operator, values)
    }

    /// Parses `(a,b,...)`; empty entries such as in `(a,)` or `()` stand for the empty value.
    fn parse_values(&mut self) -> Result<Vec<String>, LabelSelectorError> {
        match self.consume(Context::Values) {
            (Token::OpenPar, _) => {}
            (t, l) => return Err(self.syntax(t, l, "'('")),
        }
        let mut values = BTreeSet::new();
        let mut expect_value = true;
        loop {
            match self.consume(Context::Values) {
                (Token::Identifier, value) if expect_value => {
                    values.insert(value.to_owned());
                    expect_value = false;
                }
                (Token::Comma, _) => {
                    if expect_value {
                        values.insert(String::new());
                    }
                    expect_value = true;
                }
                (Token::ClosedPar, _) => {
                    if expect_value {
                        values.insert(String::new());
                    }
                    return Ok(values.into_iter().collect());
                }
                (t, l) if expect_value => return Err(self.syntax(t, l, "',', ')' or identifier")),
                (t, l) => return Err(self.syntax(t, l, "',' or ')'")),
            }
        }
    }

    /// Parses the value after `=`, `==`, `!=`, `>` or `<`; nothing there means "".
    fn parse_exact_value(&mut self) -> Result<Vec<String>, LabelSelectorError> {
        match self.lookahead(Context::Values) {
            (Token::End | Token::Comma, _) => Ok(vec![String::new()]),
            (Token::Identifier, value) => {
                self.consume(Context::Values);
                Ok(vec![value.to_owned()])
            }
            (t, l) => Err(self.syntax(t, l, "identifier")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Selector;
    use super::*;

    fn parsed(selector: &str) -> Result<Vec<(String, Operator, Vec<String>)>, LabelSelectorError> {
        Ok(parse(selector)?
            .into_iter()
            .map(|r| (r.key().to_owned(), r.operator(), r.values().to_vec()))
            .collect())
    }

    fn req(key: &str, operator: Operator, values: &[&str]) -> (String, Operator, Vec<String>) {
        let values = values.iter().map(|v| (*v).to_owned()).collect();
        (key.to_owned(), operator, values)
    }

    fn syntax_error(selector: &str) -> Option<(String, &'static str)> {
        match parse(selector) {
            Err(LabelSelectorError::Syntax {
                found, expected, ..
            }) => Some((found, expected)),
            _ => None,
        }
    }

    #[test]
    fn lexes_operators_by_longest_match() {
        let tokens: Vec<Token> = lex("a!=b==c=d!e(f)g,h>i<j in notin")
            .iter()
            .map(|t| t.0)
            .collect();
        assert_eq!(
            format!("{tokens:?}"),
            "[Identifier, NotEquals, Identifier, DoubleEquals, Identifier, Equals, Identifier, \
             Not, Identifier, OpenPar, Identifier, ClosedPar, Identifier, Comma, Identifier, \
             GreaterThan, Identifier, LessThan, Identifier, In, NotIn, End]"
        );
        assert_eq!(lex(" \t\r\n").len(), 1);
        assert_eq!(lex("===")[0], (Token::DoubleEquals, "=="));
        assert_eq!(lex("!!x")[0], (Token::Not, "!"));
    }

    #[test]
    fn parses_every_form() -> Result<(), LabelSelectorError> {
        assert_eq!(
            parsed("a=1, b==2 ,c != 3,d in (x, y),e notin (z),f,!g,h>4,i<5")?,
            [
                req("a", Operator::Equals, &["1"]),
                req("b", Operator::DoubleEquals, &["2"]),
                req("c", Operator::NotEquals, &["3"]),
                req("d", Operator::In, &["x", "y"]),
                req("e", Operator::NotIn, &["z"]),
                req("f", Operator::Exists, &[]),
                req("g", Operator::DoesNotExist, &[]),
                req("h", Operator::GreaterThan, &["4"]),
                req("i", Operator::LessThan, &["5"]),
            ]
        );
        assert_eq!(parsed("")?, []);
        assert_eq!(parsed("\t\n ")?, []);
        assert_eq!(
            parsed("example.com/app=web")?,
            [req("example.com/app", Operator::Equals, &["web"])]
        );
        Ok(())
    }

    #[test]
    fn value_sets_are_sorted_deduplicated_and_allow_empty_entries() -> Result<(), LabelSelectorError>
    {
        assert_eq!(
            parsed("x in (b,a,b)")?,
            [req("x", Operator::In, &["a", "b"])]
        );
        assert_eq!(parsed("x in ()")?, [req("x", Operator::In, &[""])]);
        assert_eq!(parsed("x in (,)")?, [req("x", Operator::In, &[""])]);
        assert_eq!(
            parsed("x in (a,,b)")?,
            [req("x", Operator::In, &["", "a", "b"])]
        );
        assert_eq!(parsed("x in (,a)")?, [req("x", Operator::In, &["", "a"])]);
        assert_eq!(
            parsed("x in (in,notin)")?,
            [req("x", Operator::In, &["in", "notin"])]
        );
        assert_eq!(parsed("x=in")?, [req("x", Operator::Equals, &["in"])]);
        assert_eq!(
            parsed("x=,y")?,
            [
                req("x", Operator::Equals, &[""]),
                req("y", Operator::Exists, &[])
            ]
        );
        Ok(())
    }

    #[test]
    fn rejects_bad_syntax_with_position_context() {
        let q = |s: &str| format!("{s:?}");
        let end = || "end of string".to_owned();
        let cases: &[(&str, Option<(String, &str)>)] = &[
            ("x==a==b", Some((q("=="), "',' or 'end of string'"))),
            ("!x=a", Some((q("="), "',' or 'end of string'"))),
            ("x in (a", Some((end(), "',' or ')'"))),
            ("x in (a b)", Some((q("b"), "',' or ')'"))),
            ("x in a", Some((q("a"), "'('"))),
            ("x in", Some((end(), "'('"))),
            ("x in (a))", Some((q(")"), "',' or 'end of string'"))),
            ("x in ((a)", Some((q("("), "',', ')' or identifier"))),
            ("x in (a,=)", Some((q("="), "',', ')' or identifier"))),
            ("(x)", Some((q("("), "!, identifier, or 'end of string'"))),
            (",x", Some((q(","), "!, identifier, or 'end of string'"))),
            ("x,", Some((end(), "identifier after ','"))),
            ("x,,y", Some((q(","), "identifier after ','"))),
            ("!", Some((end(), "identifier"))),
            ("!!x", Some((q("!"), "identifier"))),
            ("x y", Some((q("y"), "in, notin, =, ==, !=, gt, lt"))),
            ("x (a)", Some((q("("), "in, notin, =, ==, !=, gt, lt"))),
            ("x=(a)", Some((q("("), "identifier"))),
            ("x=a b", Some((q("b"), "',' or 'end of string'"))),
        ];
        for (selector, expected) in cases {
            assert_eq!(&syntax_error(selector), expected, "{selector}");
        }
    }

    #[test]
    fn validates_keys_and_values() {
        for selector in [
            "ключ=x",
            "a%b=x",
            "-a",
            "a/b/c",
            "/a",
            &format!("{}=x", "k".repeat(64)),
        ] {
            assert!(
                matches!(parse(selector), Err(LabelSelectorError::InvalidKey { .. })),
                "{selector}"
            );
        }
        for selector in [
            "x=värde",
            "x=a||y=b",
            "x in (a,-b)",
            &format!("x={}", "v".repeat(64)),
            "x=a\u{0}b",
        ] {
            assert!(
                matches!(
                    parse(selector),
                    Err(LabelSelectorError::InvalidValue { .. })
                ),
                "{selector}"
            );
        }
    }

    #[test]
    fn survives_hostile_input() {
        let deep = "(".repeat(100_000);
        assert!(parse(&deep).is_err());
        let wide = format!("x in ({})", "a,".repeat(50_000));
        assert!(matches!(parse(&wide), Ok(r) if r[0].values() == ["", "a"]));
        let many = vec!["k=v"; 10_000].join(",");
        assert!(matches!(parse(&many), Ok(r) if r.len() == 10_000));
        assert!(parse("\u{feff}x").is_err());
        assert!(parse("x=\u{200b}").is_err());
        assert!(parse("x\u{0}").is_err());
    }

    /// Deterministic pseudo-random strings over `alphabet` (a linear congruential generator,
    /// so failures reproduce).
    fn random_inputs(alphabet: &[&str], count: usize, max_len: usize) -> Vec<String> {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |bound: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(state >> 33).unwrap_or(0) % bound.max(1)
        };
        (0..count)
            .map(|_| {
                let len = next(max_len + 1);
                (0..len).map(|_| alphabet[next(alphabet.len())]).collect()
            })
            .collect()
    }

    #[test]
    fn random_selectors_never_panic_and_round_trip() {
        let alphabet = [
            "a", "b", "x/y", "=", "!", "(", ")", ",", " ", "in", "notin", "<", ">", "1", "-", ".",
            "é", "\t",
        ];
        let mut parsed = 0;
        for input in random_inputs(&alphabet, 20_000, 10) {
            let Ok(selector) = Selector::parse(&input) else {
                continue;
            };
            parsed += 1;
            let printed = selector.to_string();
            assert_eq!(
                Selector::parse(&printed),
                Ok(selector),
                "{input:?} printed as {printed:?}"
            );
        }
        assert!(parsed > 500, "only {parsed} inputs parsed");
    }
}
