//! ONNX export of the trained networks, written by hand on prost: no Python, no converter. The
//! classifier's graph mirrors [`crate::model::Cnn`] node for node (Conv, BatchNormalization in
//! inference form, Relu, MaxPool, then GlobalAveragePool, Flatten, Gemm); the detector's
//! ([`export_detector`]) mirrors [`crate::detector::Detector`] and ends with its decoding, so it
//! gives the YOLO export layout. Opset 17, with a symbolic batch dimension, so tract and
//! onnxruntime load them as they would a PyTorch export.

mod proto;

use prost::Message;
use proto::*;

use crate::detector::{DetectorShape, DISTANCE_LOG_RANGE, POOLED_BLOCKS, STRIDE};
use crate::model::{CnnShape, NamedTensor};

pub const OPSET: i64 = 17;
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "logits";
/// The detector's output, named as Ultralytics names its export's.
pub const DETECTOR_OUTPUT: &str = "output0";

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

/// Conv -> BatchNormalization -> Relu (-> MaxPool) for block `block` on `current`; returns the
/// block's output name.
fn conv_block(nodes: &mut Vec<NodeProto>, block: usize, current: &str, eps: f64, pool: bool) -> String {
    let p = format!("block{block}");
    let (conv, bn, relu, pooled) = (format!("{p}/conv"), format!("{p}/bn"), format!("{p}/relu"), format!("{p}/pool"));
    nodes.push(node(
        "Conv",
        &conv,
        &[current, &format!("{p}.conv.weight")],
        &conv,
        vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1]), ints("strides", &[1, 1])],
    ));
    let bn_inputs = ["weight", "bias", "running_mean", "running_var"].map(|w| format!("{p}.bn.{w}"));
    nodes.push(node(
        "BatchNormalization",
        &bn,
        &[&conv, &bn_inputs[0], &bn_inputs[1], &bn_inputs[2], &bn_inputs[3]],
        &bn,
        vec![float("epsilon", eps as f32)],
    ));
    nodes.push(node("Relu", &relu, &[&bn], &relu, vec![]));
    if !pool {
        return relu;
    }
    nodes.push(node("MaxPool", &pooled, &[&relu], &pooled, vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])]));
    pooled
}

fn batch() -> Dimension {
    Dimension { dim_value: None, dim_param: Some("batch".into()) }
}

fn model(graph: GraphProto, doc: String, metadata: &[(&str, String)]) -> Vec<u8> {
    let model = ModelProto {
        ir_version: 8,
        producer_name: "cvops-trainer".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: doc,
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        metadata_props: metadata
            .iter()
            .map(|(key, value)| StringStringEntryProto { key: (*key).to_owned(), value: value.clone() })
            .collect(),
    };
    model.encode_to_vec()
}

/// The serialised ONNX model for a network of `shape` with `weights` (named as the model names
/// them), with `metadata` (labels, preprocessing) stored as metadata properties.
pub fn export(shape: &CnnShape, weights: &[NamedTensor], metadata: &[(&str, String)]) -> Vec<u8> {
    let mut nodes = Vec::new();
    let mut current = INPUT.to_owned();
    for block in 0..shape.widths.len() {
        current = conv_block(&mut nodes, block, &current, shape.bn_eps, true);
    }
    nodes.push(node("GlobalAveragePool", "gap", &[&current], "gap", vec![]));
    nodes.push(node("Flatten", "flatten", &["gap"], "flatten", vec![int("axis", 1)]));
    nodes.push(node("Gemm", "head", &["flatten", "head.weight", "head.bias"], OUTPUT, vec![int("transB", 1)]));

    let graph = GraphProto {
        node: nodes,
        name: "cvops-cnn".into(),
        initializer: weights.iter().map(initializer).collect(),
        input: vec![value_info(INPUT, &[batch(), fixed(shape.channels), fixed(shape.height), fixed(shape.width)])],
        output: vec![value_info(OUTPUT, &[batch(), fixed(shape.classes)])],
    };
    model(graph, shape.describe(), metadata)
}

fn int64_initializer(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: INT64,
        name: name.into(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn float_initializer(name: &str, dims: &[usize], values: Vec<f32>) -> TensorProto {
    initializer(&NamedTensor { name: name.into(), dims: dims.to_vec(), values })
}

/// The detector's graph: the blocks, the two heads (Conv with bias), then the decoding of
/// [`crate::detector::Detector::decode`]: the distance logs clipped and exponentiated, a 1x1
/// Conv whose fixed weights turn (left, top, right, bottom) into (centre offset x, y, width,
/// height) in pixels, plus the cells' centres; the class logits through Sigmoid; both flattened
/// to `[batch, rows, cells]` and concatenated into `[batch, 4 + classes, cells]`.
pub fn export_detector(shape: &DetectorShape, weights: &[NamedTensor], metadata: &[(&str, String)]) -> Vec<u8> {
    let mut nodes = Vec::new();
    let mut current = INPUT.to_owned();
    for block in 0..shape.widths.len() {
        current = conv_block(&mut nodes, block, &current, shape.bn_eps, block < POOLED_BLOCKS);
    }
    let conv3 = vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1]), ints("strides", &[1, 1])];
    for head in ["boxes", "classes"] {
        let inputs = [current.as_str(), &format!("{head}.weight"), &format!("{head}.bias")];
        nodes.push(node("Conv", head, &inputs, head, conv3.clone()));
    }
    nodes.push(node("Clip", "clip", &["boxes", "decode.min", "decode.max"], "clipped", vec![]));
    nodes.push(node("Exp", "exp", &["clipped"], "distances", vec![]));
    nodes.push(node("Conv", "to_centre_size", &["distances", "decode.ltrb_to_xywh"], "offsets", vec![]));
    nodes.push(node("Add", "add_centres", &["offsets", "decode.centres"], "xywh", vec![]));
    nodes.push(node("Reshape", "flatten_boxes", &["xywh", "decode.box_shape"], "box_rows", vec![]));
    nodes.push(node("Sigmoid", "scores", &["classes"], "scores", vec![]));
    nodes.push(node("Reshape", "flatten_scores", &["scores", "decode.score_shape"], "score_rows", vec![]));
    nodes.push(node("Concat", "concat", &["box_rows", "score_rows"], DETECTOR_OUTPUT, vec![int("axis", 1)]));

    let (g, s) = (shape.grid(), STRIDE as f32);
    // Rows: cx offset = (r - l) / 2, cy offset = (b - t) / 2, w = l + r, h = t + b; in pixels.
    let ltrb_to_xywh: Vec<f32> = [[-0.5, 0.0, 0.5, 0.0], [0.0, -0.5, 0.0, 0.5], [1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]
        .concat()
        .iter()
        .map(|v| v * s)
        .collect();
    let centre = |i: usize| (i as f32 + 0.5) * s;
    let mut centres: Vec<f32> = (0..g * g).map(|i| centre(i % g)).collect();
    centres.extend((0..g * g).map(|i| centre(i / g)));
    centres.extend(std::iter::repeat_n(0.0, 2 * g * g));
    let mut initializers: Vec<TensorProto> = weights.iter().map(initializer).collect();
    initializers.extend([
        float_initializer("decode.min", &[], vec![-DISTANCE_LOG_RANGE]),
        float_initializer("decode.max", &[], vec![DISTANCE_LOG_RANGE]),
        float_initializer("decode.ltrb_to_xywh", &[4, 4, 1, 1], ltrb_to_xywh),
        float_initializer("decode.centres", &[1, 4, g, g], centres),
        int64_initializer("decode.box_shape", &[0, 4, -1]),
        int64_initializer("decode.score_shape", &[0, shape.classes as i64, -1]),
    ]);
    let graph = GraphProto {
        node: nodes,
        name: "cvops-detector".into(),
        initializer: initializers,
        input: vec![value_info(INPUT, &[batch(), fixed(shape.channels), fixed(shape.side), fixed(shape.side)])],
        output: vec![value_info(DETECTOR_OUTPUT, &[batch(), fixed(4 + shape.classes), fixed(shape.candidates())])],
    };
    model(graph, shape.describe(), metadata)
}
