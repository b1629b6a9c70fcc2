package solvers

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// StateFormat names gradlab's optimizer-state files. They are safetensors files
// (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length, a JSON header mapping
// each tensor name to its dtype, shape and byte range, then the raw little-endian data. A Python user reads
// them with `safetensors.numpy.load_file` (tensors) and `safe_open(...).metadata()` (step counters,
// hyperparameters, parameter names). The header's metadata also holds a CRC-32 of the data section, so a
// corrupted file is refused.
const StateFormat = "gradlab-solver-state/v1"

// stateful is implemented by every gradlab solver and wrapper: it writes its state under a name prefix and
// reads it back in two phases (validate everything, then commit), so a bad file changes nothing.
type stateful interface {
	saveState(prefix string, w *stateWriter) error
	loadState(prefix string, r *stateReader) (commit func(), err error)
}

type stateTensor struct {
	dtype tensor.Dtype
	shape []int
	f32   []float32
	f64   []float64
}

type stateWriter struct {
	meta    map[string]string
	tensors map[string]stateTensor
}

func (w *stateWriter) putMeta(key string, v interface{}) error {
	if _, dup := w.meta[key]; dup {
		return errors.Errorf("state key %q written twice", key)
	}
	switch x := v.(type) {
	case string:
		w.meta[key] = x
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return errors.Wrapf(err, "encode state %q", key)
		}
		w.meta[key] = string(b)
	}
	return nil
}

func (w *stateWriter) putTensor(key string, t stateTensor) error {
	if _, dup := w.tensors[key]; dup {
		return errors.Errorf("state tensor %q written twice (parameter names collide)", key)
	}
	w.tensors[key] = t
	return nil
}

type stateReader struct {
	meta    map[string]string
	tensors map[string]stateTensor
}

func (r *stateReader) getMeta(key string, v interface{}) error {
	s, ok := r.meta[key]
	if !ok {
		return errors.Errorf("state file has no %q", key)
	}
	if p, ok := v.(*string); ok {
		*p = s
		return nil
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return errors.Wrapf(err, "state %q is malformed", key)
	}
	return nil
}

// getTensor returns the tensor key, checking its dtype and shape.
func (r *stateReader) getTensor(key string, dtype tensor.Dtype, shape []int) (stateTensor, error) {
	t, ok := r.tensors[key]
	if !ok {
		return t, errors.Errorf("state file has no tensor %q", key)
	}
	if t.dtype != dtype || !tensor.Shape(t.shape).Eq(tensor.Shape(shape)) {
		return t, errors.Errorf("state tensor %q is %v%v, want %v%v", key, t.dtype, t.shape, dtype, shape)
	}
	return t, nil
}

// SaveState writes the full state of solver s (a gradlab solver or wrapper) to w.
func SaveState(w io.Writer, s G.Solver) error {
	st, ok := s.(stateful)
	if !ok {
		return errors.Errorf("solver %T cannot save its state", s)
	}
	sw := &stateWriter{meta: map[string]string{"format": StateFormat}, tensors: map[string]stateTensor{}}
	if err := st.saveState("", sw); err != nil {
		return errors.Wrap(err, "save solver state")
	}
	return errors.Wrap(writeSafetensors(w, sw), "save solver state")
}

// LoadState replaces the state of solver s by the one read from r. The file must come from a solver of the
// same kind and composition; a truncated, corrupted or mismatched file returns an error and leaves s
// exactly as it was.
func LoadState(r io.Reader, s G.Solver) error {
	st, ok := s.(stateful)
	if !ok {
		return errors.Errorf("solver %T cannot load state", s)
	}
	sr, err := readSafetensors(r)
	if err != nil {
		return errors.Wrap(err, "load solver state")
	}
	if sr.meta["format"] != StateFormat {
		return errors.Errorf("load solver state: not a %s file (format %q)", StateFormat, sr.meta["format"])
	}
	commit, err := st.loadState("", sr)
	if err != nil {
		return errors.Wrap(err, "load solver state")
	}
	commit()
	return nil
}

// SaveStateFile writes the state of s to path atomically (a temporary file renamed into place).
func SaveStateFile(path string, s G.Solver) error {
	var buf bytes.Buffer
	if err := SaveState(&buf, s); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".gradlab-state-*")
	if err != nil {
		return errors.Wrap(err, "save solver state")
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return errors.Wrapf(err, "write %s", tmp.Name())
	}
	if err := tmp.Close(); err != nil {
		return errors.Wrapf(err, "write %s", tmp.Name())
	}
	return errors.Wrapf(os.Rename(tmp.Name(), path), "save solver state to %s", path)
}

// LoadStateFile loads the state of s from path (see LoadState).
func LoadStateFile(path string, s G.Solver) error {
	f, err := os.Open(path)
	if err != nil {
		return errors.Wrap(err, "load solver state")
	}
	defer f.Close()
	return errors.Wrapf(LoadState(f, s), "%s", path)
}

type stHeaderEntry struct {
	Dtype       string `json:"dtype"`
	Shape       []int  `json:"shape"`
	DataOffsets [2]int `json:"data_offsets"`
}

// maxHeader bounds the JSON header a reader accepts, so a corrupted length cannot exhaust memory.
const maxHeader = 100 << 20

func writeSafetensors(w io.Writer, sw *stateWriter) error {
	names := make([]string, 0, len(sw.tensors))
	for k := range sw.tensors {
		names = append(names, k)
	}
	sort.Strings(names)
	var data bytes.Buffer
	header := map[string]interface{}{}
	for _, k := range names {
		t := sw.tensors[k]
		begin := data.Len()
		var dt string
		if t.dtype == tensor.Float32 {
			dt = "F32"
			for _, x := range t.f32 {
				_ = binary.Write(&data, binary.LittleEndian, math.Float32bits(x))
			}
		} else {
			dt = "F64"
			for _, x := range t.f64 {
				_ = binary.Write(&data, binary.LittleEndian, math.Float64bits(x))
			}
		}
		shape := t.shape
		if shape == nil {
			shape = []int{}
		}
		header[k] = stHeaderEntry{Dtype: dt, Shape: shape, DataOffsets: [2]int{begin, data.Len()}}
	}
	meta := make(map[string]string, len(sw.meta)+1)
	for k, v := range sw.meta {
		meta[k] = v
	}
	meta["crc32"] = strconv.FormatUint(uint64(crc32.ChecksumIEEE(data.Bytes())), 10)
	header["__metadata__"] = meta
	hb, err := json.Marshal(header)
	if err != nil {
		return err
	}
	for len(hb)%8 != 0 { // the format pads the header with spaces to 8-byte alignment
		hb = append(hb, ' ')
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hb)))
	for _, b := range [][]byte{lenBuf[:], hb, data.Bytes()} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func readSafetensors(r io.Reader) (*stateReader, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if len(raw) < 8 {
		return nil, errors.Errorf("file is truncated (%d bytes)", len(raw))
	}
	n := binary.LittleEndian.Uint64(raw[:8])
	if n > maxHeader || n > uint64(len(raw)-8) {
		return nil, errors.Errorf("file is truncated or corrupt: header length %d, file %d bytes", n, len(raw))
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+n], &header); err != nil {
		return nil, errors.Wrap(err, "corrupt header")
	}
	data := raw[8+n:]
	sr := &stateReader{meta: map[string]string{}, tensors: map[string]stateTensor{}}
	if m, ok := header["__metadata__"]; ok {
		if err := json.Unmarshal(m, &sr.meta); err != nil {
			return nil, errors.Wrap(err, "corrupt metadata")
		}
	}
	want, ok := sr.meta["crc32"]
	if !ok {
		return nil, errors.New("no checksum in metadata")
	}
	if got := strconv.FormatUint(uint64(crc32.ChecksumIEEE(data)), 10); got != want {
		return nil, errors.Errorf("data checksum mismatch (file corrupt or truncated): crc32 %s, header says %s", got, want)
	}
	for k, v := range header {
		if k == "__metadata__" {
			continue
		}
		var e stHeaderEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, errors.Wrapf(err, "corrupt header entry %q", k)
		}
		size := 1
		for _, d := range e.Shape {
			if d < 0 {
				return nil, errors.Errorf("tensor %q has negative dimension", k)
			}
			size *= d
		}
		b, end := e.DataOffsets[0], e.DataOffsets[1]
		t := stateTensor{shape: e.Shape}
		var width int
		switch e.Dtype {
		case "F32":
			t.dtype, width = tensor.Float32, 4
		case "F64":
			t.dtype, width = tensor.Float64, 8
		default:
			return nil, errors.Errorf("tensor %q has unsupported dtype %q", k, e.Dtype)
		}
		if b < 0 || end < b || end > len(data) || end-b != size*width {
			return nil, errors.Errorf("tensor %q: byte range [%d, %d) does not fit shape %v in %d data bytes", k, b, end, e.Shape, len(data))
		}
		chunk := data[b:end]
		if width == 4 {
			t.f32 = make([]float32, size)
			for i := range t.f32 {
				t.f32[i] = math.Float32frombits(binary.LittleEndian.Uint32(chunk[4*i:]))
			}
		} else {
			t.f64 = make([]float64, size)
			for i := range t.f64 {
				t.f64[i] = math.Float64frombits(binary.LittleEndian.Uint64(chunk[8*i:]))
			}
		}
		sr.tensors[k] = t
	}
	return sr, nil
}

// stateChecker is a rule that validates a loaded parameter state beyond its buffers (rule-specific
// scalars whose size depends on the shape).
type stateChecker interface {
	checkState(st *paramState) error
}

// paramRecord is what the state file says about one parameter besides its buffers.
type paramRecord struct {
	Name  string    `json:"name"`
	Dtype string    `json:"dtype"`
	Shape []int     `json:"shape"`
	Step  int64     `json:"step"`
	Scal  []float64 `json:"scalars,omitempty"`
	Bufs  []string  `json:"buffers"`
}

func dtypeByName(s string) (tensor.Dtype, error) {
	switch s {
	case "float32":
		return tensor.Float32, nil
	case "float64":
		return tensor.Float64, nil
	}
	return tensor.Dtype{}, errors.Errorf("unsupported dtype %q", s)
}

// saveStates writes every parameter state of reg under prefix.
func saveStates(prefix string, reg *registry, w *stateWriter) error {
	recs := make([]paramRecord, 0, len(reg.order))
	for _, name := range reg.order {
		s := reg.states[name]
		recs = append(recs, paramRecord{Name: name, Dtype: s.dtype.Name(), Shape: s.shape, Step: s.step, Scal: s.scal, Bufs: s.bufs})
		for i, b := range s.bufs {
			t := stateTensor{dtype: s.dtype, shape: s.shape}
			if s.b32 != nil {
				t.f32 = s.b32[i]
			} else {
				t.f64 = s.b64[i]
			}
			if err := w.putTensor(prefix+name+"."+b, t); err != nil {
				return err
			}
		}
	}
	if err := w.putMeta(prefix+"params", recs); err != nil {
		return err
	}
	return w.putMeta(prefix+"skipped", reg.skipped)
}

// loadStates reads the parameter states written by saveStates into fresh structures; wantBufs, when not
// nil, is the buffer list every parameter must have.
func loadStates(prefix string, r *stateReader, wantBufs []string) (map[string]*paramState, []string, int64, error) {
	var recs []paramRecord
	if err := r.getMeta(prefix+"params", &recs); err != nil {
		return nil, nil, 0, err
	}
	var skipped int64
	if err := r.getMeta(prefix+"skipped", &skipped); err != nil {
		return nil, nil, 0, err
	}
	states := make(map[string]*paramState, len(recs))
	order := make([]string, 0, len(recs))
	for _, rec := range recs {
		if _, dup := states[rec.Name]; dup {
			return nil, nil, 0, errors.Errorf("parameter %q listed twice", rec.Name)
		}
		dt, err := dtypeByName(rec.Dtype)
		if err != nil {
			return nil, nil, 0, errors.Wrapf(err, "parameter %q", rec.Name)
		}
		if rec.Step < 0 {
			return nil, nil, 0, errors.Errorf("parameter %q has negative step %d", rec.Name, rec.Step)
		}
		if wantBufs != nil && fmt.Sprint(rec.Bufs) != fmt.Sprint(wantBufs) {
			return nil, nil, 0, errors.Errorf("parameter %q has buffers %v, this solver keeps %v", rec.Name, rec.Bufs, wantBufs)
		}
		s := &paramState{name: rec.Name, dtype: dt, shape: rec.Shape, step: rec.Step, scal: rec.Scal, bufs: rec.Bufs}
		for _, b := range rec.Bufs {
			t, err := r.getTensor(prefix+rec.Name+"."+b, dt, rec.Shape)
			if err != nil {
				return nil, nil, 0, err
			}
			if dt == tensor.Float32 {
				s.b32 = append(s.b32, t.f32)
			} else {
				s.b64 = append(s.b64, t.f64)
			}
		}
		states[rec.Name] = s
		order = append(order, rec.Name)
	}
	return states, order, skipped, nil
}

// saveConfig writes a solver's kind, hyperparameters and step count.
func saveConfig(prefix string, c *config, steps int64, w *stateWriter) error {
	if err := w.putMeta(prefix+"kind", c.kind); err != nil {
		return err
	}
	if err := w.putMeta(prefix+"hyper", c.vals); err != nil {
		return err
	}
	return w.putMeta(prefix+"steps", steps)
}

// loadConfig reads what saveConfig wrote into a validated copy of c.
func loadConfig(prefix string, c *config, r *stateReader) (*config, int64, error) {
	var kind string
	if err := r.getMeta(prefix+"kind", &kind); err != nil {
		return nil, 0, err
	}
	if kind != c.kind {
		return nil, 0, errors.Errorf("state file is for %q, this solver is %q", kind, c.kind)
	}
	var vals map[string]float64
	if err := r.getMeta(prefix+"hyper", &vals); err != nil {
		return nil, 0, err
	}
	nc := *c
	nc.vals = make(map[string]float64, len(c.vals))
	for k, v := range c.vals {
		nc.vals[k] = v
	}
	for k, v := range vals {
		if err := nc.set(k, v); err != nil {
			return nil, 0, err
		}
	}
	var steps int64
	if err := r.getMeta(prefix+"steps", &steps); err != nil {
		return nil, 0, err
	}
	if steps < 0 {
		return nil, 0, errors.Errorf("negative step count %d", steps)
	}
	return &nc, steps, nil
}

func (o *Optimizer) saveState(prefix string, w *stateWriter) error {
	if err := saveConfig(prefix, o.cfg, o.steps, w); err != nil {
		return err
	}
	return saveStates(prefix, &o.reg, w)
}

func (o *Optimizer) loadState(prefix string, r *stateReader) (func(), error) {
	c, steps, err := loadConfig(prefix, o.cfg, r)
	if err != nil {
		return nil, err
	}
	ru, err := ruleFactories[c.kind](c)
	if err != nil {
		return nil, errors.Wrap(err, c.kind)
	}
	states, order, skipped, err := loadStates(prefix, r, ru.bufferNames())
	if err != nil {
		return nil, err
	}
	if ck, ok := ru.(stateChecker); ok {
		for _, st := range states {
			if err := ck.checkState(st); err != nil {
				return nil, err
			}
		}
	}
	return func() {
		*o.cfg = *c
		o.rule = ru
		o.steps = steps
		o.reg.states, o.reg.order, o.reg.skipped = states, order, skipped
	}, nil
}
