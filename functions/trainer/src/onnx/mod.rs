//! ONNX export of the trained network, written by hand on prost: no Python, no converter. The
//! graph mirrors [`crate::model::Cnn`] node for node (Conv, BatchNormalization in inference form,
//! Relu, MaxPool, then GlobalAveragePool, Flatten, Gemm), opset 17, with a symbolic batch
//! dimension, so tract and onnxruntime load it as they would a PyTorch export.

mod proto;

use prost::Message;
use proto::*;

use crate::model::{CnnShape, NamedTensor};

pub const OPSET: i64 = 17;
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "logits";

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), ints: values.to_vec(), r#type: ATTRIBUTE_INTS, ..Default::default() }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i: value, r#type: ATTRIBUTE_INT, ..Default::default() }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto { name: name.into(), f: value, r#type: ATTRIBUTE_FLOAT, ..Default::default() }
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_owned()],
        name: name.to_owned(),
        op_type: op.to_owned(),
        attribute,
    }
}

fn value_info(name: &str, dims: &[Dimension]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto { elem_type: FLOAT, shape: Some(TensorShapeProto { dim: dims.to_vec() }) }),
        }),
    }
}

fn fixed(n: usize) -> Dimension {
    Dimension { dim_value: Some(n as i64), dim_param: None }
}

fn initializer(tensor: &NamedTensor) -> TensorProto {
    TensorProto {
        dims: tensor.dims.iter().map(|&d| d as i64).collect(),
        data_type: FLOAT,
        name: tensor.name.clone(),
        raw_data: tensor.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// The serialised ONNX model for a network of `shape` with `weights` (named as the model names
/// them), with `metadata` (labels, preprocessing) stored as metadata properties.
pub fn export(shape: &CnnShape, weights: &[NamedTensor], metadata: &[(&str, String)]) -> Vec<u8> {
    let mut nodes = Vec::new();
    let mut current = INPUT.to_owned();
    for block in 0..shape.widths.len() {
        let p = format!("block{block}");
        let (conv, bn, relu, pool) = (format!("{p}/conv"), format!("{p}/bn"), format!("{p}/relu"), format!("{p}/pool"));
        nodes.push(node(
            "Conv",
            &conv,
            &[&current, &format!("{p}.conv.weight")],
            &conv,
            vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1]), ints("strides", &[1, 1])],
        ));
        let bn_inputs = ["weight", "bias", "running_mean", "running_var"].map(|w| format!("{p}.bn.{w}"));
        nodes.push(node(
            "BatchNormalization",
            &bn,
            &[&conv, &bn_inputs[0], &bn_inputs[1], &bn_inputs[2], &bn_inputs[3]],
            &bn,
            vec![float("epsilon", shape.bn_eps as f32)],
        ));
        nodes.push(node("Relu", &relu, &[&bn], &relu, vec![]));
        nodes.push(node("MaxPool", &pool, &[&relu], &pool, vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])]));
        current = pool;
    }
    nodes.push(node("GlobalAveragePool", "gap", &[&current], "gap", vec![]));
    nodes.push(node("Flatten", "flatten", &["gap"], "flatten", vec![int("axis", 1)]));
    nodes.push(node("Gemm", "head", &["flatten", "head.weight", "head.bias"], OUTPUT, vec![int("transB", 1)]));

    let batch = Dimension { dim_value: None, dim_param: Some("batch".into()) };
    let graph = GraphProto {
        node: nodes,
        name: "cvops-cnn".into(),
        initializer: weights.iter().map(initializer).collect(),
        input: vec![value_info(INPUT, &[batch.clone(), fixed(shape.channels), fixed(shape.height), fixed(shape.width)])],
        output: vec![value_info(OUTPUT, &[batch, fixed(shape.classes)])],
    };
    let model = ModelProto {
        ir_version: 8,
        producer_name: "cvops-trainer".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: shape.describe(),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        metadata_props: metadata
            .iter()
            .map(|(key, value)| StringStringEntryProto { key: (*key).to_owned(), value: value.clone() })
            .collect(),
    };
    model.encode_to_vec()
}
