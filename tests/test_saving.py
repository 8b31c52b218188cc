"""Saving: KAREModel ``.keras`` round trip (incl. optimizer state) and KernelPredictor save/load."""

import io
import json
import zipfile

import keras
import numpy as np
import pytest

import keras_kare
from keras_kare import KAREModel, KernelPredictor
from keras_kare.predictor_io import FORMAT_VERSION, IncompatibleFormatError


def _data(n=16, d=5, seed=0):
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, d)).astype("float32")
    y = np.sign(r.standard_normal(n)).astype("float32")
    return x, y


def _net(d=5, width=8, out=1):
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(width, "gelu"), keras.layers.Dense(out)])


@keras.saving.register_keras_serializable(package="keras_kare_tests")
class SubclassedNet(keras.Model):
    """A subclassed network: it comes back unbuilt from its config, so the KAREModel build config matters."""

    def __init__(self, width=8, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.hidden = keras.layers.Dense(width, activation="tanh")
        self.out = keras.layers.Dense(1)

    def call(self, x, training=None):
        return self.out(self.hidden(x))

    def get_config(self):
        return {**super().get_config(), "width": self.width}


@pytest.mark.parametrize("optimizer, subclassed", [("adam", False), ("sgd_momentum", True)])
def test_kare_model_round_trip_identical_next_step(tmp_path, optimizer, subclassed):
    x, y = _data()
    net = SubclassedNet() if subclassed else _net()
    model = KAREModel(net, ridge=0.2, relative_ridge=True, kernel="trace", solve_dtype="float64")
    opt = keras.optimizers.Adam(1e-2) if optimizer == "adam" else keras.optimizers.SGD(0.5, momentum=0.9)
    model.compile(optimizer=opt)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: KAREModel and KARE are registered

    assert isinstance(loaded, KAREModel)
    assert loaded.kare_layer.ridge == 0.2 and loaded.kare_layer.relative_ridge is True
    assert loaded.kernel == "trace" and loaded.kare_layer.solve_dtype == "float64"
    assert type(loaded.optimizer) is type(model.optimizer)
    assert int(loaded.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) == 4
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)

    h1 = model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    h2 = loaded.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)  # the same graph on the same data: bit-identical
    assert h1.history["kare"] == h2.history["kare"]


def test_kare_model_evaluate_after_load(tmp_path):
    x, y = _data()
    model = KAREModel(_net(), ridge=0.1)
    model.compile(optimizer="sgd")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    a = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    b = loaded.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert a["kare"] == pytest.approx(b["kare"], rel=1e-6)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


@pytest.mark.parametrize("ridge", [1e-2, "auto"])
def test_predictor_save_load_predicts_identically(tmp_path, ridge):
    x, y = _data(n=20)
    xt, _ = _data(n=7, seed=1)
    model = KAREModel(_net(), ridge=0.1)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.fit(x, y, batch_size=10, epochs=1, verbose=0)
    kp = KernelPredictor(model, ridge=ridge, batch_size=None).fit(x, y)
    path = tmp_path / "pred.kkp"
    kp.save(path)
    kp2 = KernelPredictor.load(path)
    assert isinstance(kp2.model, KAREModel)
    np.testing.assert_array_equal(kp.predict(xt), kp2.predict(xt))
    assert kp2.ridge == ridge and kp2.ridge_ == kp.ridge_ and kp2.effective_ridge_ == kp.effective_ridge_
    np.testing.assert_array_equal(kp.dual_coef_, kp2.dual_coef_)
    p1, p2 = kp.ridge_path([1e-3, 1e-1]), kp2.ridge_path([1e-3, 1e-1])
    np.testing.assert_allclose(p1.kare, p2.kare, rtol=1e-12)
    if ridge == "auto":
        np.testing.assert_array_equal(kp.ridge_path_.kare, kp2.ridge_path_.kare)


def test_predictor_save_without_kernel_recomputes_it(tmp_path):
    x, y = _data(n=12)
    y2 = np.stack([y, -y], axis=1)  # 2-D targets keep their shape
    kp = KernelPredictor(_net(out=2), ridge=1e-2, kernel="summed_output").fit(x, y2)
    kp.save(tmp_path / "p.kkp", include_train_kernel=False)
    with zipfile.ZipFile(tmp_path / "p.kkp") as zf:
        assert "train_kernel" not in json.loads(zf.read("metadata.json"))["arrays"]
    kp2 = KernelPredictor.load(tmp_path / "p.kkp")
    np.testing.assert_allclose(kp2.train_kernel_, kp.train_kernel_, rtol=1e-6, atol=1e-6)
    out = kp2.predict(x[:3])
    assert out.shape == (3, 2)
    np.testing.assert_array_equal(out, kp.predict(x[:3]))


def test_predictor_dict_inputs_round_trip(tmp_path):
    a = keras.Input((3,), name="a")
    b = keras.Input((2,), name="b")
    h = keras.layers.Dense(6, "tanh")(keras.layers.Concatenate()([a, b]))
    net = keras.Model({"a": a, "b": b}, keras.layers.Dense(1)(h))
    r = np.random.default_rng(0)
    x = {"a": r.standard_normal((10, 3)).astype("float32"), "b": r.standard_normal((10, 2)).astype("float32")}
    y = r.standard_normal(10)
    kp = KernelPredictor(net, ridge=1e-2).fit(x, y)
    kp.save(tmp_path / "p.kkp")
    kp2 = KernelPredictor.load(tmp_path / "p.kkp")
    assert set(kp2.X_fit_) == {"a", "b"}
    np.testing.assert_array_equal(kp.predict(x), kp2.predict(x))


def test_unfitted_predictor_round_trip(tmp_path):
    kp = KernelPredictor(_net(), ridge=0.5, relative_ridge=False, batch_size=4)
    kp.model.build((None, 5))
    kp.save(tmp_path / "p.kkp")
    kp2 = KernelPredictor.load(tmp_path / "p.kkp")
    assert (kp2.ridge, kp2.relative_ridge, kp2.batch_size) == (0.5, False, 4)
    with pytest.raises(keras_kare.NotFittedError):
        kp2.predict(np.zeros((2, 5), "float32"))


def _rewrite_metadata(src, dst, **changes):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "metadata.json":
                meta = json.loads(data)
                meta.update(changes)
                data = json.dumps(meta)
            zout.writestr(item, data)


def test_load_incompatible_version_raises_clearly(tmp_path):
    x, y = _data(n=8)
    kp = KernelPredictor(_net(), ridge=1e-2).fit(x, y)
    kp.save(tmp_path / "p.kkp")
    _rewrite_metadata(
        tmp_path / "p.kkp", tmp_path / "future.kkp", format_version=FORMAT_VERSION + 1, keras_kare_version="9.9"
    )
    with pytest.raises(
        IncompatibleFormatError, match=r"format version 3 \(keras_kare 9.9\).*reads format versions 1, 2 only"
    ):
        KernelPredictor.load(tmp_path / "future.kkp")
    _rewrite_metadata(tmp_path / "p.kkp", tmp_path / "other.kkp", format="something.else")
    with pytest.raises(IncompatibleFormatError, match="not a keras_kare.KernelPredictor archive"):
        KernelPredictor.load(tmp_path / "other.kkp")
    (tmp_path / "junk.kkp").write_text("hello")
    with pytest.raises(IncompatibleFormatError, match="not a KernelPredictor file"):
        KernelPredictor.load(tmp_path / "junk.kkp")
    with pytest.raises(FileNotFoundError):
        KernelPredictor.load(tmp_path / "missing.kkp")


def test_save_after_weights_changed_raises(tmp_path):
    x, y = _data(n=8)
    net = _net()
    kp = KernelPredictor(net, ridge=1e-2).fit(x, y)
    net.layers[0].kernel.assign(net.layers[0].kernel + 1.0)
    with pytest.raises(ValueError, match="weights changed since fit"):
        kp.save(tmp_path / "p.kkp")
    assert not (tmp_path / "p.kkp").exists()
    kp.fit(x, y).save(tmp_path / "p.kkp", overwrite=True)
    with pytest.raises(ValueError, match="exists"):
        kp.save(tmp_path / "p.kkp", overwrite=False)


def test_format_1_archive_loads_as_exact_predictor(tmp_path):
    x, y = _data(n=10)
    kp = KernelPredictor(_net(), ridge=1e-2, solver="exact").fit(x, y)
    kp.save(tmp_path / "p.kkp")
    with zipfile.ZipFile(tmp_path / "p.kkp") as zf:
        meta = json.loads(zf.read("metadata.json"))
    params = {k: v for k, v in meta["params"].items() if k not in ("solver", "n_centers", "seed")}
    state = {k: v for k, v in meta["state"].items() if k != "solver_"}
    _rewrite_metadata(tmp_path / "p.kkp", tmp_path / "v1.kkp", format_version=1, params=params, state=state)
    old = KernelPredictor.load(tmp_path / "v1.kkp")
    assert old.solver == "auto" and old.solver_ == "exact"
    np.testing.assert_array_equal(old.predict(x[:4]), kp.predict(x[:4]))


# ---------------------------------------------------------------- damaged files and failed saves
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small fitted predictor's archive and its member layout."""
    keras.utils.set_random_seed(0)
    x, y = _data(n=8)
    path = tmp_path_factory.mktemp("saved") / "p.kkp"
    KernelPredictor(_net(), ridge=1e-2).fit(x, y).save(path)
    with zipfile.ZipFile(path) as zf:
        members = {info.filename: info for info in zf.infolist()}
    return path, members


def _member_data_offset(path, info) -> int:
    """Where a stored member's bytes start (after its local header)."""
    raw = path.read_bytes()
    name_len, extra_len = np.frombuffer(raw[info.header_offset + 26 : info.header_offset + 30], "<u2")
    return info.header_offset + 30 + int(name_len) + int(extra_len)


@pytest.mark.parametrize("member", ["metadata.json", "model.keras", "arrays.npz"])
def test_flipped_byte_inside_a_member_is_the_format_error(saved, tmp_path, member):
    path, members = saved
    raw = bytearray(path.read_bytes())
    info = members[member]
    raw[_member_data_offset(path, info) + info.file_size // 2] ^= 0x5A
    (tmp_path / "bad.kkp").write_bytes(bytes(raw))
    with pytest.raises(IncompatibleFormatError, match=f"damaged.*{member}.*CRC"):
        KernelPredictor.load(tmp_path / "bad.kkp")


@pytest.mark.parametrize("keep", [0.3, 0.7, 0.999])
def test_truncated_file_is_the_format_error(saved, tmp_path, keep):
    path, _ = saved
    raw = path.read_bytes()
    (tmp_path / "cut.kkp").write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(IncompatibleFormatError):
        KernelPredictor.load(tmp_path / "cut.kkp")


def _rewrite(src, dst, drop=(), replace=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            if item in drop:
                continue
            zout.writestr(item, (replace or {}).get(item, zin.read(item)))


@pytest.mark.parametrize("member", ["model.keras", "arrays.npz"])
def test_missing_member_is_the_format_error(saved, tmp_path, member):
    _rewrite(saved[0], tmp_path / "bad.kkp", drop=[member])
    with pytest.raises(IncompatibleFormatError, match=f"missing member.*{member}"):
        KernelPredictor.load(tmp_path / "bad.kkp")


def test_missing_array_is_the_format_error(saved, tmp_path):
    path, _ = saved
    with zipfile.ZipFile(path) as zf, np.load(io.BytesIO(zf.read("arrays.npz"))) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "dual_coef"}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _rewrite(path, tmp_path / "bad.kkp", replace={"arrays.npz": buf.getvalue()})
    with pytest.raises(IncompatibleFormatError, match=r"arrays \['dual_coef'\] listed"):
        KernelPredictor.load(tmp_path / "bad.kkp")


@pytest.mark.parametrize(
    "metadata, message",
    [
        ("{not json", "metadata.json is not JSON"),
        ("[1, 2]", "holds a list"),
        (b"\xff\xfe", "metadata.json is not JSON"),
        ({"fitted": None}, "'fitted' is None"),
        ({"params": {"ridge": 0.1, "no_such_param": 1}}, "params do not fit"),
        ({"state": {"solver_": "exact"}}, "fitted state is incomplete"),
        ({"x_structure": {"list": [{"__leaf__": 5}]}}, "fitted state is incomplete"),
    ],
)
def test_wrong_metadata_is_the_format_error(saved, tmp_path, metadata, message):
    path, _ = saved
    with zipfile.ZipFile(path) as zf:
        meta = json.loads(zf.read("metadata.json"))
    data = metadata if isinstance(metadata, (str, bytes)) else json.dumps({**meta, **metadata})
    _rewrite(path, tmp_path / "bad.kkp", replace={"metadata.json": data})
    with pytest.raises(IncompatibleFormatError, match=message):
        KernelPredictor.load(tmp_path / "bad.kkp")


def test_failed_saves_leave_nothing_behind(tmp_path, monkeypatch):
    x, y = _data(n=8)
    kp = KernelPredictor(_net(), ridge=1e-2).fit(x, y)
    (tmp_path / "dir.kkp").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        kp.save(tmp_path / "dir.kkp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.kkp"] and not list((tmp_path / "dir.kkp").iterdir())

    kp.save(tmp_path / "p.kkp")
    good = (tmp_path / "p.kkp").read_bytes()

    def broken_writestr(self, name, data, *args, **kwargs):  # the disk fills up while the archive is written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", broken_writestr)
    with pytest.raises(OSError, match="No space left"):
        kp.save(tmp_path / "p.kkp")
    with pytest.raises(OSError, match="No space left"):
        kp.save(tmp_path / "new.kkp")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.kkp", "p.kkp"]  # no temporary file, no partial file
    assert (tmp_path / "p.kkp").read_bytes() == good  # the existing file is untouched
    np.testing.assert_array_equal(KernelPredictor.load(tmp_path / "p.kkp").predict(x), kp.predict(x))
