//! Where tract spends its time on a model: each node of the optimised plan, timed over RUNS
//! single-image runs on one thread. What the README's latency analysis is drawn from.
//!
//!     cargo run --release -p cvops-inference --example profile -- MODEL.onnx CHANNELS HEIGHT WIDTH [RUNS]

use std::time::Instant;

use tract_onnx::prelude::*;

fn main() -> TractResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: profile MODEL.onnx CHANNELS HEIGHT WIDTH [RUNS]";
    let dims: Vec<usize> =
        args.get(1..4).ok_or_else(|| anyhow::anyhow!(usage))?.iter().map(|d| d.parse()).collect::<Result<_, _>>()?;
    let runs: usize = args.get(4).map_or(Ok(2000), |r| r.parse())?;
    let shape = [1, dims[0], dims[1], dims[2]];
    let model =
        onnx().model_for_path(&args[0])?.with_input_fact(0, f32::fact(shape).into())?.into_optimized()?.into_runnable()?;
    let input = Tensor::zero::<f32>(&shape)?;
    let mut micros = vec![0f64; model.model().nodes().len()];
    let mut state = SimpleState::new(model.clone())?;
    for _ in 0..runs {
        state.run_plan_with_eval(tvec!(input.clone().into()), |session, op_state, node, inputs| {
            let started = Instant::now();
            let outputs = tract_onnx::tract_core::plan::eval(session, op_state, node, inputs);
            micros[node.id] += started.elapsed().as_secs_f64() * 1e6 / runs as f64;
            outputs
        })?;
    }
    for node in model.model().nodes().iter().filter(|n| micros[n.id] >= 0.05) {
        let shape = node.outputs.first().map(|o| format!("{:?}", o.fact.shape)).unwrap_or_default();
        println!("{:>3} {:<16} {:<14} {:>8.2} us", node.id, node.op().name(), shape, micros[node.id]);
    }
    println!("total {:.1} us", micros.iter().sum::<f64>());
    Ok(())
}
