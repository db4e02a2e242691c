//! `kernels::quant` on SmolLM2's own blocks (issue 18's exactness item):
//! the shipped GGUF's Q4_1 projections and Q8_0 embedding rows, on every
//! ISA this CPU has, equal the dequantized f32 product within the bound of
//! the 8-bit activation rounding, and every ISA gives the same bits.

use candle_core::quantized::GgmlDType;
use candle_core::Device;
use diva_core::ops::quant::{self, Isa, QMatrix, QType};
use diva_core::testing::real_model;
use diva_core::weights::gguf::GgufFile;

fn matrix(g: &GgufFile, name: &str, rows: usize) -> QMatrix {
    let q = g.tensor(name, &Device::Cpu).unwrap();
    let (d_out, d_in) = q.shape().dims2().unwrap();
    let ty = match q.dtype() {
        GgmlDType::Q4_1 => QType::Q4_1,
        GgmlDType::Q8_0 => QType::Q8_0,
        t => panic!("{name}: {t:?}"),
    };
    let bytes = q.data().unwrap();
    let row = bytes.len() / d_out;
    QMatrix::from_bytes(
        ty,
        rows.min(d_out),
        d_in,
        bytes[..rows.min(d_out) * row].to_vec(),
    )
    .unwrap()
}

#[test]
fn smollm2_blocks_are_the_dequantized_product_within_the_bound_on_every_isa() {
    let g = GgufFile::open(&real_model("smollm2-135m-instruct").join("model.gguf")).unwrap();
    for (name, want) in [
        ("blk.0.attn_q.weight", QType::Q4_1),
        ("blk.7.ffn_down.weight", QType::Q4_1),
        ("token_embd.weight", QType::Q8_0),
    ] {
        let w = matrix(&g, name, 256);
        assert_eq!(w.ty, want, "{name}");
        let wd = w.dequantize();
        let d_in = w.d_in;
        // Activations with an outlier, as SmolLM2's residual stream has.
        let rows = 3;
        let mut x: Vec<f32> = (0..rows * d_in)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.7)
            .collect();
        x[5] = 40.0;
        let acts = quant::quantize_acts(&x, rows, d_in);
        let mut first: Option<Vec<f32>> = None;
        for &isa in Isa::available() {
            let y = quant::matmul_t_on(isa, &x, rows, &w);
            for b in 0..rows {
                for o in 0..w.d_out {
                    let wr = &wd[o * d_in..(o + 1) * d_in];
                    let want: f64 = (0..d_in)
                        .map(|i| wr[i] as f64 * x[b * d_in + i] as f64)
                        .sum();
                    let bound = quant::error_bound(wr, &x, &acts, b, d_in);
                    let got = y[b * w.d_out + o] as f64;
                    assert!(
                        (got - want).abs() <= bound,
                        "{name} {isa:?} ({b},{o}): {got} vs {want} ± {bound}"
                    );
                }
            }
            match &first {
                None => first = Some(y),
                Some(f) => assert_eq!(f, &y, "{name}: {isa:?} differs from the portable path"),
            }
        }
    }
}
