//! Reading typed side outputs: `stream.side_output(&tag)` is a stream of what the
//! operator heading `stream`'s stage sends to `tag`.
//!
//! ```
//! use weir::prelude::*;
//!
//! /// Passes short lines on, and sends long ones to a side output.
//! #[derive(Clone)]
//! struct SplitLong {
//!     long: OutputTag<String>,
//! }
//!
//! impl KeyedProcess for SplitLong {
//!     type Key = NoKey;
//!     type In = String;
//!     type Out = String;
//!     fn process(
//!         &mut self,
//!         line: String,
//!         ctx: &mut KeyedContext<'_, NoKey, String>,
//!     ) -> Result<(), OperatorError> {
//!         if line.len() > 40 {
//!             ctx.output(&self.long, line)
//!         } else {
//!             ctx.emit(line);
//!             Ok(())
//!         }
//!     }
//! }
//!
//! let long = OutputTag::<String>::new("long");
//! let (short_lines, long_lines) = (CollectSink::new(), CollectSink::new());
//! let job = Job::new("side-outputs");
//! let mut split = job
//!     .source(W1Lines::new(1_000)) // 100 lines of ten words
//!     .process(SplitLong { long: long.clone() });
//! split.side_output(&long).sink(long_lines.clone());
//! let sunk = split.sink(short_lines.clone());
//! Node::new(EngineOptions::for_tests(2)).unwrap().run(sunk).unwrap();
//! assert_eq!(short_lines.items().len() + long_lines.items().len(), 100);
//! assert!(long_lines.items().iter().all(|l: &String| l.len() > 40));
//! ```

use crate::job::builder::{side_stream, KeyedHead, SideHead, SideReader, Stream};
use crate::operator::chain::Identity;
use crate::operator::OutputTag;

impl<P, C> Stream<KeyedHead<P>, C> {
    /// The records the operator heading this stage sends to `tag`, as a stream of
    /// their own. Typed: `T` is the tag's record type, which the operator must send.
    pub fn side_output<T: crate::exchange::Data>(
        &mut self,
        tag: &OutputTag<T>,
    ) -> Stream<SideHead<T>, Identity> {
        let reader = side_stream::<T>(self.graph(), tag.name());
        let slot = reader.slot();
        self.read_side_here(SideReader {
            slot,
            what: tag.name().to_string(),
        });
        reader
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::prelude::*;

    /// Sends every event to a side output, and nothing to its main output.
    #[derive(Clone)]
    struct AllToSide(OutputTag<W2Event>);

    impl KeyedProcess for AllToSide {
        type Key = NoKey;
        type In = W2Event;
        type Out = W2Event;
        fn process(
            &mut self,
            event: W2Event,
            ctx: &mut KeyedContext<'_, NoKey, W2Event>,
        ) -> Result<(), OperatorError> {
            ctx.output(&self.0, event)
        }
    }

    /// Emits each record's timestamp as the context sees it, with the event's own.
    #[derive(Clone)]
    struct Stamps;

    impl KeyedProcess for Stamps {
        type Key = u64;
        type In = W2Event;
        type Out = (i64, i64);
        fn process(
            &mut self,
            event: W2Event,
            ctx: &mut KeyedContext<'_, u64, (i64, i64)>,
        ) -> Result<(), OperatorError> {
            let ts = ctx.timestamp();
            ctx.emit((ts, event.time_ms));
            Ok(())
        }
    }

    #[test]
    fn records_read_from_a_side_output_keep_their_event_time() {
        let tag = OutputTag::<W2Event>::new("all");
        let stamps = CollectSink::<(i64, i64)>::new();
        let job = Job::new("side-stamps");
        let time = WatermarkStrategy::bounded_out_of_orderness(
            Duration::from_millis(500),
            |e: &W2Event| e.time_ms,
        );
        let mut split = job
            .source_with_time(W2Events::new(5_000), time)
            .process(AllToSide(tag.clone()));
        split
            .side_output(&tag)
            .key_by(|e: &W2Event| e.key)
            .process(Stamps)
            .sink(stamps.clone());
        let sunk = split.sink(CollectSink::<W2Event>::new());
        Node::new(EngineOptions::for_tests(2))
            .unwrap()
            .run(sunk)
            .unwrap();
        let got = stamps.items();
        assert_eq!(got.len(), 5_000);
        assert!(got.iter().all(|(ts, event)| ts == event), "{:?}", &got[..5]);
    }
}
