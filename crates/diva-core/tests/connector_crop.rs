//! Encoder-state cropping (`encoder_frames`): the connector attends to the
//! first F frames only, the setting travels in config.json, and a connector
//! without it is the official one.

use candle_core::{DType, Device};
use diva_core::models::checkpoint::{self, DivaConfig};
use diva_core::models::Exec;
use diva_core::testing::{max_abs_diff_tensors as max_diff, tiny_diva};

#[test]
fn cropping_equals_running_on_the_first_frames_and_round_trips() {
    let mut tiny = tiny_diva(DType::F32);
    let states = tiny.batch_states(DType::F32);
    assert_eq!(
        tiny.connector.encoder_frames, None,
        "official checkpoints do not crop"
    );
    let full = tiny.connector.forward(&states, Exec::Fused).unwrap();
    let first = states.narrow(1, 0, 200).unwrap();
    let on_first = tiny.connector.forward(&first, Exec::Fused).unwrap();
    assert!(
        max_diff(&full, &on_first) > 1e-4,
        "cropping must change the output"
    );

    tiny.connector.encoder_frames = Some(200);
    let cropped = tiny.connector.forward(&states, Exec::Fused).unwrap();
    assert!(max_diff(&cropped, &on_first) < 1e-6);
    // Autograd path crops the same way.
    let g = tiny.connector.forward(&states, Exec::Autograd).unwrap();
    assert!(max_diff(&g, &on_first) < 1e-4);

    // Saved and loaded: config.json carries it, the loader applies it.
    let dir = tempfile::tempdir().unwrap();
    checkpoint::save(dir.path(), &tiny.connector, &tiny.config, None).unwrap();
    let cfg = DivaConfig::read(dir.path()).unwrap();
    assert_eq!(cfg.extra["encoder_frames"], 200);
    let back =
        checkpoint::load_connector(dir.path(), &tiny.whisper.config, DType::F32, &Device::Cpu)
            .unwrap();
    assert_eq!(back.encoder_frames, Some(200));
    assert!(max_diff(&back.forward(&states, Exec::Fused).unwrap(), &on_first) < 1e-6);

    // Without cropping the key is gone again; a bad value is a clear error.
    tiny.connector.encoder_frames = None;
    checkpoint::save(dir.path(), &tiny.connector, &cfg, None).unwrap();
    assert!(!DivaConfig::read(dir.path())
        .unwrap()
        .extra
        .contains_key("encoder_frames"));
    let p = dir.path().join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v["encoder_frames"] = "all".into();
    std::fs::write(&p, v.to_string()).unwrap();
    let e = match checkpoint::load_connector(
        dir.path(),
        &tiny.whisper.config,
        DType::F32,
        &Device::Cpu,
    ) {
        Ok(_) => panic!("a non-integer encoder_frames is refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("encoder_frames must be a positive integer"),
        "{e}"
    );
}
