package solvers

import (
	"sort"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/internal/lbfgs"
)

// WithLineSearch selects L-BFGS's line search: "" (fixed step lr) or "strong_wolfe".
func WithLineSearch(name string) Option {
	switch name {
	case "", "none":
		return SetFlag("line_search", false)
	case lbfgs.LineSearchStrongWolfe:
		return SetFlag("line_search", true)
	}
	return func(c *config) error { return errors.Errorf("%s: unknown line search %q", c.kind, name) }
}

// LBFGS is limited-memory BFGS (Liu & Nocedal, "On the limited memory BFGS method for large scale
// optimization"), an exact port of torch.optim.LBFGS 1.13 including its strong-Wolfe line search
// (Nocedal & Wright, Algorithm 3.5/3.6, with cubic interpolation). All parameters are flattened in the
// order given into one vector, so the same parameters must be passed in the same order at every step; the
// state (curvature pairs, direction, step, iteration counts) persists across steps as in torch.
//
// One StepClosure is one torch step(closure): up to max_iter iterations and max_eval closure calls.
// Hyperparameters (defaults, torch's): lr (1), max_iter (20), max_eval (max_iter·5/4; 0 means that),
// tolerance_grad (1e-7), tolerance_change (1e-9), history_size (100), line_search (off; WithLineSearch).
// A closure error or a non-finite gradient aborts the step with the parameters and state restored.
type LBFGS struct {
	lrControl
	views  registry
	names  []string
	shapes [][]int
	dtype  tensor.Dtype
	n      int
	st32   *lbfgs.State[float32]
	st64   *lbfgs.State[float64]
	x32    []float32
	x64    []float64
}

func init() {
	register("lbfgs", func(opts ...Option) (Solver, error) { return NewLBFGS(opts...) })
}

// NewLBFGS builds an L-BFGS solver.
func NewLBFGS(opts ...Option) (*LBFGS, error) {
	c, err := newConfig("lbfgs", []hyperSpec{
		lrSpec(1),
		{key: "max_iter", def: 20, check: positiveInt},
		{key: "max_eval", def: 0, check: func(v float64) error {
			if v < 0 || v != float64(int(v)) {
				return errors.New("must be a non-negative integer (0: max_iter·5/4)")
			}
			return nil
		}},
		{key: "tolerance_grad", def: 1e-7, check: nonNegative},
		{key: "tolerance_change", def: 1e-9, check: nonNegative},
		{key: "history_size", def: 100, check: positiveInt},
		flagSpec("line_search", false),
	}, opts)
	if err != nil {
		return nil, err
	}
	l := &LBFGS{lrControl: lrControl{cfg: c}}
	if _, err := l.lbfgsConfig(c.f("lr")); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *LBFGS) lbfgsConfig(lr float64) (lbfgs.Config, error) {
	c := l.cfg
	cfg := lbfgs.Config{
		LR: lr, MaxIter: int(c.f("max_iter")), MaxEval: int(c.f("max_eval")),
		ToleranceGrad: c.f("tolerance_grad"), ToleranceChange: c.f("tolerance_change"),
		HistorySize: int(c.f("history_size")),
	}
	if cfg.MaxEval == 0 {
		cfg.MaxEval = cfg.MaxIter * 5 / 4
	}
	if c.b("line_search") {
		cfg.LineSearch = lbfgs.LineSearchStrongWolfe
	}
	return cfg, errors.Wrap(cfg.Validate(), "lbfgs")
}

// StateBytes returns the bytes of the curvature pairs and vectors L-BFGS keeps.
func (l *LBFGS) StateBytes() int64 {
	var n int64
	if l.st32 != nil {
		t, _ := l.st32.Export()
		for _, v := range t {
			n += int64(len(v)) * 4
		}
	}
	if l.st64 != nil {
		t, _ := l.st64.Export()
		for _, v := range t {
			n += int64(len(v)) * 8
		}
	}
	return n
}

// Step returns an error: L-BFGS re-evaluates the objective and needs a closure.
func (l *LBFGS) Step([]G.ValueGrad) error {
	return errors.New("lbfgs: needs a closure to re-evaluate the model; call StepClosure")
}

// bind checks that views are the parameters L-BFGS was first used with (same names, order, shapes, one dtype).
func (l *LBFGS) bind(views []view) error {
	if l.names == nil {
		dt := views[0].dtype
		n := 0
		for i := range views {
			if views[i].dtype != dt {
				return errors.Errorf("lbfgs: parameters mix dtypes %v and %v; L-BFGS flattens them into one vector", dt, views[i].dtype)
			}
			n += views[i].size()
		}
		names := make([]string, len(views))
		shapes := make([][]int, len(views))
		for i := range views {
			names[i], shapes[i] = views[i].name, append([]int(nil), views[i].shape...)
		}
		l.names, l.shapes, l.dtype, l.n = names, shapes, dt, n
		if dt == tensor.Float32 {
			l.st32, l.x32 = lbfgs.NewState[float32](n), make([]float32, n)
		} else {
			l.st64, l.x64 = lbfgs.NewState[float64](n), make([]float64, n)
		}
		return nil
	}
	if len(views) != len(l.names) {
		return errors.Errorf("lbfgs: got %d parameters, the state is for %d (%v)", len(views), len(l.names), l.names)
	}
	for i := range views {
		if views[i].name != l.names[i] || !tensor.Shape(l.shapes[i]).Eq(views[i].shape) || views[i].dtype != l.dtype {
			return errors.Errorf("lbfgs: parameter %d is %q %v %v, the state is for %q %v %v (pass the same parameters in the same order)",
				i, views[i].name, views[i].shape, views[i].dtype, l.names[i], tensor.Shape(l.shapes[i]), l.dtype)
		}
	}
	return nil
}

// StepClosure performs one torch LBFGS.step(closure) and returns the loss at the starting parameters.
func (l *LBFGS) StepClosure(params []G.ValueGrad, closure Closure) (float64, error) {
	if closure == nil {
		return 0, errors.New("lbfgs: nil closure")
	}
	if len(params) == 0 {
		return 0, errors.New("lbfgs: no parameters")
	}
	views, err := l.views.resolve(params)
	if err != nil {
		return 0, errors.Wrap(err, "lbfgs")
	}
	if err := l.bind(views); err != nil {
		return 0, err
	}
	lr, err := l.stepLR()
	if err != nil {
		return 0, err
	}
	cfg, err := l.lbfgsConfig(lr)
	if err != nil {
		return 0, err
	}
	var loss float64
	if l.dtype == tensor.Float32 {
		loss, err = lbfgsStep(cfg, l.st32, l.x32, views, closure, func(v *view) ([]float32, []float32) { return v.w32, v.g32 })
	} else {
		loss, err = lbfgsStep(cfg, l.st64, l.x64, views, closure, func(v *view) ([]float64, []float64) { return v.w64, v.g64 })
	}
	zeroGrads(views)
	if err != nil {
		return 0, err
	}
	l.steps++
	return loss, nil
}

// lbfgsStep flattens the parameters into x, runs one L-BFGS step whose objective scatters x back into
// the parameters and calls the closure, and leaves the final x in the parameters (the starting x if the
// step failed).
func lbfgsStep[T lbfgs.Float](cfg lbfgs.Config, st *lbfgs.State[T], x []T, views []view, closure Closure, data func(*view) ([]T, []T)) (float64, error) {
	scatter := func(x []T) {
		off := 0
		for i := range views {
			w, _ := data(&views[i])
			off += copy(w, x[off:])
		}
	}
	off := 0
	for i := range views {
		w, _ := data(&views[i])
		off += copy(x[off:], w)
	}
	obj := func(x, grad []T) (float64, error) {
		scatter(x)
		zeroGrads(views)
		loss, err := closure()
		if err != nil {
			return 0, err
		}
		off := 0
		for i := range views {
			_, g := data(&views[i])
			if !allFinite(g) {
				return 0, errors.Errorf("gradient of %q is not finite", views[i].name)
			}
			off += copy(grad[off:], g)
		}
		return loss, nil
	}
	loss, err := lbfgs.Step(cfg, st, x, obj)
	scatter(x) // on error lbfgs.Step restored x
	return loss, errors.Wrap(err, "lbfgs")
}

// Kind returns "lbfgs".
func (l *LBFGS) Kind() string { return "lbfgs" }

func (l *LBFGS) saveState(prefix string, w *stateWriter) error {
	if err := saveConfig(prefix, l.cfg, l.steps, w); err != nil {
		return err
	}
	if err := w.putMeta(prefix+"params", map[string]interface{}{"names": l.names, "shapes": l.shapes, "dtype": dtypeName(l)}); err != nil {
		return err
	}
	var scalars map[string]float64
	switch {
	case l.st32 != nil:
		var ts map[string][]float32
		ts, scalars = l.st32.Export()
		for k, v := range ts {
			if err := w.putTensor(prefix+"lbfgs."+k, stateTensor{dtype: tensor.Float32, shape: []int{len(v)}, f32: v}); err != nil {
				return err
			}
		}
	case l.st64 != nil:
		var ts map[string][]float64
		ts, scalars = l.st64.Export()
		for k, v := range ts {
			if err := w.putTensor(prefix+"lbfgs."+k, stateTensor{dtype: tensor.Float64, shape: []int{len(v)}, f64: v}); err != nil {
				return err
			}
		}
	}
	keys := make([]string, 0, len(scalars))
	for k, v := range scalars {
		keys = append(keys, k)
		// scalars as one-element float64 tensors: bit-exact, and NaN-safe unlike JSON
		if err := w.putTensor(prefix+"lbfgs.scalar."+k, stateTensor{dtype: tensor.Float64, shape: []int{1}, f64: []float64{v}}); err != nil {
			return err
		}
	}
	sort.Strings(keys)
	return w.putMeta(prefix+"lbfgs.scalars", keys)
}

func dtypeName(l *LBFGS) string {
	if l.names == nil {
		return ""
	}
	return l.dtype.Name()
}

func (l *LBFGS) loadState(prefix string, r *stateReader) (func(), error) {
	c, steps, err := loadConfig(prefix, l.cfg, r)
	if err != nil {
		return nil, err
	}
	var p struct {
		Names  []string `json:"names"`
		Shapes [][]int  `json:"shapes"`
		Dtype  string   `json:"dtype"`
	}
	if err := r.getMeta(prefix+"params", &p); err != nil {
		return nil, err
	}
	var keys []string
	if err := r.getMeta(prefix+"lbfgs.scalars", &keys); err != nil {
		return nil, err
	}
	nl := &LBFGS{lrControl: lrControl{cfg: c, steps: steps}}
	if p.Names != nil {
		if len(p.Shapes) != len(p.Names) {
			return nil, errors.New("lbfgs: parameter names and shapes differ in number")
		}
		dt, err := dtypeByName(p.Dtype)
		if err != nil {
			return nil, err
		}
		n := 0
		for _, s := range p.Shapes {
			n += tensor.Shape(s).TotalSize()
		}
		scalars := map[string]float64{}
		for _, k := range keys {
			t, err := r.getTensor(prefix+"lbfgs.scalar."+k, tensor.Float64, []int{1})
			if err != nil {
				return nil, err
			}
			scalars[k] = t.f64[0]
		}
		nl.names, nl.shapes, nl.dtype, nl.n = p.Names, p.Shapes, dt, n
		tensorKey := func(k string) (stateTensor, bool) {
			t, ok := r.tensors[prefix+"lbfgs."+k]
			return t, ok && !isScalarKey(k)
		}
		if dt == tensor.Float32 {
			ts := map[string][]float32{}
			for _, k := range lbfgsTensorKeys {
				if t, ok := tensorKey(k); ok {
					if t.dtype != dt {
						return nil, errors.Errorf("lbfgs: tensor %q has dtype %v", k, t.dtype)
					}
					ts[k] = t.f32
				}
			}
			if nl.st32, err = lbfgs.Import[float32](n, ts, scalars); err != nil {
				return nil, err
			}
			nl.x32 = make([]float32, n)
		} else {
			ts := map[string][]float64{}
			for _, k := range lbfgsTensorKeys {
				if t, ok := tensorKey(k); ok {
					if t.dtype != dt {
						return nil, errors.Errorf("lbfgs: tensor %q has dtype %v", k, t.dtype)
					}
					ts[k] = t.f64
				}
			}
			if nl.st64, err = lbfgs.Import[float64](n, ts, scalars); err != nil {
				return nil, err
			}
			nl.x64 = make([]float64, n)
		}
	}
	return func() {
		*l.cfg = *c
		l.steps = steps
		l.names, l.shapes, l.dtype, l.n = nl.names, nl.shapes, nl.dtype, nl.n
		l.st32, l.st64, l.x32, l.x64 = nl.st32, nl.st64, nl.x32, nl.x64
	}, nil
}

var lbfgsTensorKeys = []string{lbfgs.KeyD, lbfgs.KeyOldDirs, lbfgs.KeyOldStps, lbfgs.KeyRo, lbfgs.KeyPrevFlatGrad, lbfgs.KeyAl}

func isScalarKey(k string) bool { return len(k) > 7 && k[:7] == "scalar." }
