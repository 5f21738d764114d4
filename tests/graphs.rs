//! Checkpoints, watermarks and the serializable exchange over job graphs (union,
//! join, fan-out, broadcast state, operator state): fault injection compared record
//! for record with a run without faults, savepoints restored at another
//! parallelism, watermarks over several inputs, barrier alignment under
//! backpressure, and the serialized exchange compared with the local one.

mod common;
mod graphs {
    pub mod watermarks;
}

use graphs::watermarks::{
    a_quiet_input_that_is_not_idle_holds_the_watermark_back,
    an_idle_input_is_left_out_of_the_minimum, Shape,
};

#[test]
fn an_idle_input_of_a_union_is_left_out_of_its_watermark() {
    an_idle_input_is_left_out_of_the_minimum(Shape::Union);
}

#[test]
fn an_idle_input_of_a_connect_is_left_out_of_its_watermark() {
    an_idle_input_is_left_out_of_the_minimum(Shape::Connect);
}

#[test]
fn an_idle_input_of_a_union_with_a_shared_source_is_left_out_of_its_watermark() {
    an_idle_input_is_left_out_of_the_minimum(Shape::SharedUnion);
}

#[test]
fn a_quiet_input_of_a_union_holds_its_watermark_at_the_minimum() {
    a_quiet_input_that_is_not_idle_holds_the_watermark_back(Shape::Union);
}

#[test]
fn a_quiet_input_of_a_connect_holds_its_watermark_at_the_minimum() {
    a_quiet_input_that_is_not_idle_holds_the_watermark_back(Shape::Connect);
}

#[test]
fn a_quiet_input_of_a_union_with_a_shared_source_holds_its_watermark_at_the_minimum() {
    a_quiet_input_that_is_not_idle_holds_the_watermark_back(Shape::SharedUnion);
}
