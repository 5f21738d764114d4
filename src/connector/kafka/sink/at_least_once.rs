//! One partition of an at-least-once Kafka sink: an idempotent producer flushed at
//! every barrier.

use super::error::KafkaSinkError;
use super::log::LogProducer;
use super::output::KafkaOutput;
use crate::connector::sink::{Sink, SinkError};

/// One partition of a [`KafkaSink`](super::KafkaSink) in
/// [`Delivery::AtLeastOnce`](super::Delivery::AtLeastOnce).
pub struct AtLeastOncePart<F> {
    producer: Box<dyn LogProducer>,
    topic: String,
    format: F,
}

impl<F> AtLeastOncePart<F> {
    pub(crate) fn new(producer: Box<dyn LogProducer>, topic: String, format: F) -> Self {
        AtLeastOncePart {
            producer,
            topic,
            format,
        }
    }
}

impl<T, F> Sink<T> for AtLeastOncePart<F>
where
    F: Fn(&T) -> KafkaOutput + Send + 'static,
{
    fn write(&mut self, item: T) -> Result<(), SinkError> {
        let record = (self.format)(&item);
        Ok(self.producer.send(&self.topic, &record)?)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(self.producer.flush()?)
    }

    /// Every record before the barrier is acknowledged before the barrier is: a
    /// complete epoch's output is in Kafka, so a restart from it loses nothing.
    fn flush(&mut self, _epoch: u64) -> Result<(), SinkError> {
        self.producer
            .flush()
            .map_err(|e: KafkaSinkError| SinkError::from(e))
    }
}
