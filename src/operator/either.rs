//! The input of a two-input operator: a record from its left or its right input.

use serde::{Deserialize, Serialize};

/// One record of a two-input operator (`connect(left, right)`, joins, broadcast
/// state): which input it came from, with its value. A two-input operator's `In` is
/// `Either<L, R>` and it matches on the variant, as Flink's `processElement1` and
/// `processElement2` are two methods.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Either<L, R> {
    /// A record of the left (first) input.
    Left(L),
    /// A record of the right (second) input.
    Right(R),
}

impl<L, R> Either<L, R> {
    /// Whether this is a record of the left input.
    pub fn is_left(&self) -> bool {
        matches!(self, Either::Left(_))
    }

    /// The left value, if this is one.
    pub fn left(self) -> Option<L> {
        match self {
            Either::Left(l) => Some(l),
            Either::Right(_) => None,
        }
    }

    /// The right value, if this is one.
    pub fn right(self) -> Option<R> {
        match self {
            Either::Left(_) => None,
            Either::Right(r) => Some(r),
        }
    }
}
