//! Computes the instance metrics of the cases that `scripts/panoptica_compare.py` writes, for the
//! side-by-side check with panoptica.
//!
//! ```text
//! cargo run --release --example metrics_cases -- CASE_DIR
//! ```
//!
//! `CASE_DIR/cases.json` lists `{"name", "shape", "pred", "gt"}` (raw little-endian `u32`
//! instance maps, C order); the results of every matching go to `CASE_DIR/ours.json`.

use blob_loss::metrics::{MatchScore, Matching, MetricsConfig, evaluate_instances};
use ndarray::{ArrayD, IxDyn};

fn read(path: std::path::PathBuf, shape: &[usize]) -> ArrayD<u32> {
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let values = bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    ArrayD::from_shape_vec(IxDyn(shape), values).expect("size matches the shape")
}

fn main() {
    let dir: std::path::PathBuf = std::env::args().nth(1).expect("usage: metrics_cases CASE_DIR").into();
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).expect("cases.json")).expect("JSON");
    let matchings = [
        ("naive_iou_0.5", Matching::Greedy { score: MatchScore::IoU, threshold: 0.5 }),
        ("naive_dsc_0.1", Matching::Greedy { score: MatchScore::Dice, threshold: 0.1 }),
        ("bipartite_iou_0.5", Matching::Optimal { score: MatchScore::IoU, threshold: 0.5 }),
        ("any_overlap", Matching::AnyOverlap),
    ];
    let mut out = Vec::new();
    for case in cases.as_array().expect("a list of cases") {
        let shape: Vec<usize> =
            case["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        let pred = read(dir.join(case["pred"].as_str().unwrap()), &shape);
        let gt = read(dir.join(case["gt"].as_str().unwrap()), &shape);
        for (name, matching) in matchings {
            let m = evaluate_instances(pred.view(), gt.view(), &MetricsConfig { matching, ..Default::default() })
                .expect("valid case");
            out.push(serde_json::json!({
                "case": case["name"], "matching": name, "tp": m.true_positives, "fp": m.false_positives,
                "fn": m.false_negatives, "precision": m.precision, "recall": m.recall, "f1": m.f1,
                "sq": m.sq_iou, "sq_dsc": m.sq_dice, "pq": m.pq,
            }));
        }
    }
    std::fs::write(dir.join("ours.json"), serde_json::to_string_pretty(&out).unwrap()).expect("write ours.json");
    println!("{} results written to {}", out.len(), dir.join("ours.json").display());
}
