package solvers

import (
	"math"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// DoG is the parameter-free "Distance over Gradients" step size (Ivgi, Hinder & Carmon, "DoG is SGD's Best
// Friend: A Parameter-Free Dynamic Step Size Schedule") as the authors' code (formll/dog,
// src/dog/torch/dog.py, classes DoG and LDoG, version 1.1.0):
//
//	g ← g + wd·p (coupled L2, as the code)
//	first step:  r̄ = reps_rel·(1 + ‖x_0‖);  G = ‖g‖² + eps
//	later:       r̄ ← max(r̄, ‖x − x_0‖);    G ← G + ‖g‖²
//	η = lr·r̄/√G (init_eta > 0 replaces η at the first step);  p ← p − η·g
//
// DoG ("dog") takes the norms over all parameters of the step as one vector; L-DoG ("ldog") keeps r̄, G and
// η per tensor. x_0 is each parameter's value when first seen. The authors recommend combining DoG with
// their polynomial-decay iterate averaging (PDAverager); it is not part of this solver (use an averaging
// wrapper). Hyperparameters (defaults, the code's): lr (1; the paper's c, changing it is not recommended),
// reps_rel (1e-6; 1e-4 with batch norm), eps (1e-8, must be > 0 so G > 0), weight_decay (0),
// init_eta (0: none).
type DoG struct {
	lrControl
	reg       registry
	layerwise bool
	started   bool
	rbar, g2  float64 // global r̄ and G (DoG)
}

func dogSpecs() []hyperSpec {
	return []hyperSpec{
		lrSpec(1), {key: "reps_rel", def: 1e-6, check: positive}, {key: "eps", def: 1e-8, check: positive},
		wdSpec(0), {key: "init_eta", def: 0, check: nonNegative},
	}
}

// NewDoG returns global DoG (see DoG).
func NewDoG(opts ...Option) (*DoG, error) { return newDoG("dog", opts) }

// NewLDoG returns layer-wise DoG, L-DoG (see DoG).
func NewLDoG(opts ...Option) (*DoG, error) { return newDoG("ldog", opts) }

func newDoG(kind string, opts []Option) (*DoG, error) {
	c, err := newConfig(kind, dogSpecs(), opts)
	if err != nil {
		return nil, err
	}
	d := &DoG{lrControl: lrControl{cfg: c}, layerwise: kind == "ldog"}
	d.reg.init()
	return d, nil
}

func init() {
	register("dog", func(opts ...Option) (Solver, error) { return NewDoG(opts...) })
	register("ldog", func(opts ...Option) (Solver, error) { return NewLDoG(opts...) })
}

// StateBytes returns the memory of the state (x_0 of every parameter).
func (d *DoG) StateBytes() int64 { return d.reg.bytes() }

func (d *DoG) wd(v *view) float64 {
	if d.cfg.mask == nil || d.cfg.mask(v.name, v.shape) {
		return d.cfg.f("weight_decay")
	}
	return 0
}

// dogSums returns ‖p‖², ‖g + wd·p‖² and ‖p − x0‖² of one parameter.
func dogSums[T Float](p, g, x0 []T, wd float64) (pp, gg, dd float64) {
	for i := range p {
		pi := float64(p[i])
		gi := float64(g[i]) + wd*pi
		di := pi - float64(x0[i])
		pp += pi * pi
		gg += gi * gi
		dd += di * di
	}
	return
}

func dogApply[T Float](p, g []T, wd, eta float64) {
	w, e := T(wd), T(eta)
	for i := range p {
		gi := g[i]
		if wd != 0 {
			gi += w * p[i]
		}
		p[i] -= e * gi
		g[i] = 0
	}
}

// Step applies one DoG step; on any error nothing is changed.
func (d *DoG) Step(params []G.ValueGrad) error {
	views, err := d.reg.resolve(params)
	if err != nil {
		return errors.Wrap(err, d.cfg.kind)
	}
	if skip, err := d.reg.screen(views, d.cfg.nonFinite); skip || err != nil {
		return errors.Wrap(err, d.cfg.kind)
	}
	lr, err := d.stepLR()
	if err != nil {
		return err
	}
	reps, eps, initEta := d.cfg.f("reps_rel"), d.cfg.f("eps"), d.cfg.f("init_eta")
	var pp, gg, dd float64
	for i := range views {
		v := &views[i]
		st := d.reg.state(v, dogBufs, dogZeroInit)
		if st.step == 0 { // first sight: x_0 = p
			if st.b32 != nil {
				copy(st.b32[0], v.w32)
			} else {
				copy(st.b64[0], v.w64)
			}
		}
		var a, b, c float64
		if v.dtype == tensor.Float32 {
			a, b, c = dogSums(v.w32, v.g32, st.b32[0], d.wd(v))
		} else {
			a, b, c = dogSums(v.w64, v.g64, st.b64[0], d.wd(v))
		}
		if d.layerwise {
			first := st.step == 0
			if first {
				st.scal = []float64{reps * (1 + math.Sqrt(a)), b + eps}
			} else {
				st.scal[0] = max(st.scal[0], math.Sqrt(c))
				st.scal[1] += b
			}
			eta := lr * st.scal[0] / math.Sqrt(st.scal[1])
			if first && initEta > 0 {
				eta = initEta
			}
			d.apply(v, st, eta)
			continue
		}
		pp, gg, dd = pp+a, gg+b, dd+c
	}
	if !d.layerwise {
		first := !d.started
		if first {
			d.rbar, d.g2 = reps*(1+math.Sqrt(pp)), gg+eps
			d.started = true
		} else {
			d.rbar = max(d.rbar, math.Sqrt(dd))
			d.g2 += gg
		}
		eta := lr * d.rbar / math.Sqrt(d.g2)
		if first && initEta > 0 {
			eta = initEta
		}
		for i := range views {
			v := &views[i]
			d.apply(v, d.reg.states[v.name], eta)
		}
	}
	d.steps++
	return nil
}

func (d *DoG) apply(v *view, st *paramState, eta float64) {
	st.step++
	if v.dtype == tensor.Float32 {
		dogApply(v.w32, v.g32, d.wd(v), eta)
	} else {
		dogApply(v.w64, v.g64, d.wd(v), eta)
	}
}

var dogBufNames = []string{"x0"}

func dogBufs() []string       { return dogBufNames }
func dogZeroInit(int) float64 { return 0 }

// Eta returns the global DoG step size η = lr·r̄/√G of the last step (0 before the first; L-DoG keeps
// one per tensor and returns 0).
func (d *DoG) Eta() float64 {
	if d.g2 == 0 {
		return 0
	}
	return d.LR() * d.rbar / math.Sqrt(d.g2)
}

func (d *DoG) saveState(prefix string, w *stateWriter) error {
	if err := saveConfig(prefix, d.cfg, d.steps, w); err != nil {
		return err
	}
	if err := saveStates(prefix, &d.reg, w); err != nil {
		return err
	}
	// r̄ and G as a float64 tensor: bit-exact
	return w.putTensor(prefix+"dog.global", stateTensor{dtype: tensor.Float64, shape: []int{3},
		f64: []float64{d.rbar, d.g2, b2f(d.started)}})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (d *DoG) loadState(prefix string, r *stateReader) (func(), error) {
	c, steps, err := loadConfig(prefix, d.cfg, r)
	if err != nil {
		return nil, err
	}
	states, order, skipped, err := loadStates(prefix, r, dogBufNames)
	if err != nil {
		return nil, err
	}
	for _, s := range states {
		want := 0
		if d.layerwise && s.step > 0 {
			want = 2
		}
		if len(s.scal) != want {
			return nil, errors.Errorf("%s: parameter %q has %d scalars, want %d", d.cfg.kind, s.name, len(s.scal), want)
		}
	}
	t, err := r.getTensor(prefix+"dog.global", tensor.Float64, []int{3})
	if err != nil {
		return nil, err
	}
	glob := t.f64
	if glob[2] != 0 && glob[2] != 1 {
		return nil, errors.Errorf("%s: malformed global state", d.cfg.kind)
	}
	return func() {
		*d.cfg = *c
		d.steps = steps
		d.reg.states, d.reg.order, d.reg.skipped = states, order, skipped
		d.rbar, d.g2, d.started = glob[0], glob[1], glob[2] == 1
	}, nil
}
