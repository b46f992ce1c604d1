//! Numbers and literals in JSON, validated one byte at a time, so a body whose scalars
//! the gateway's parser would refuse is passed through rather than rewritten.

/// Literals a value may be. `NaN` and the infinities are not JSON, but the gateway's
/// parser (Python's `json`) accepts them, so a body using them is still rewritten.
const LITERALS: [&[u8]; 6] = [
    b"true",
    b"false",
    b"null",
    b"NaN",
    b"Infinity",
    b"-Infinity",
];

/// Validation of a number or literal, one byte at a time (numbers per RFC 8259).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scalar {
    /// Matched `at` bytes of `LITERALS[word]`.
    Literal {
        word: u8,
        at: u8,
    },
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl Scalar {
    pub(super) fn start(b: u8) -> Option<Scalar> {
        match b {
            b'-' => Some(Scalar::Minus),
            b'0' => Some(Scalar::Zero),
            b'1'..=b'9' => Some(Scalar::Int),
            _ => LITERALS[..5]
                .iter()
                .position(|w| w[0] == b)
                .map(|word| Scalar::Literal {
                    word: word as u8,
                    at: 1,
                }),
        }
    }

    pub(super) fn step(self, b: u8) -> Option<Scalar> {
        use Scalar::*;
        match (self, b) {
            (Literal { word, at }, _) => {
                let w = LITERALS[word as usize];
                (w.get(at as usize) == Some(&b)).then_some(Literal { word, at: at + 1 })
            }
            (Minus, b'0') => Some(Zero),
            (Minus, b'1'..=b'9') => Some(Int),
            (Minus, b'I') => Some(Literal { word: 5, at: 2 }),
            (Int, b'0'..=b'9') => Some(Int),
            (Zero | Int, b'.') => Some(Dot),
            (Dot | Frac, b'0'..=b'9') => Some(Frac),
            (Zero | Int | Frac, b'e' | b'E') => Some(Exp),
            (Exp, b'+' | b'-') => Some(ExpSign),
            (Exp | ExpSign | ExpDigits, b'0'..=b'9') => Some(ExpDigits),
            _ => None,
        }
    }

    pub(super) fn complete(self) -> bool {
        match self {
            Scalar::Literal { word, at } => LITERALS[word as usize].len() == at as usize,
            Scalar::Zero | Scalar::Int | Scalar::Frac | Scalar::ExpDigits => true,
            _ => false,
        }
    }
}
