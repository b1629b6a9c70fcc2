package zeroth

import (
	"math"
	"slices"
	"strings"
	"unsafe"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/solvers"
)

// pview is one parameter resolved for a step.
type pview struct {
	name  string
	key   uint64
	decay bool
	w32   []float32
	g32   []float32
	w64   []float64
	g64   []float64
}

// engine is the SPSA machinery shared by Estimator and MeZO: resolution of the parameters, the seed
// schedule, in-place perturbation and restoration, and the projected gradients of one step.
type engine struct {
	cfg      config
	kind     string
	views    []pview
	steps    int64
	forwards int64
	projs    []float64 // proj_i / n for the n directions of the current step
	dseeds   []uint64  // direction seeds of the current step
	bases    []uint64  // stream bases of the current parameter, one per direction
	lo, hi   int       // the views perturbed this step
	mbase    uint64    // sparse-mask seed of this step
	eps      float64
}

func newEngine(kind string, opts []Option) (engine, error) {
	e := engine{cfg: defaultConfig(), kind: kind}
	if err := e.cfg.apply(opts); err != nil {
		return engine{}, err
	}
	e.projs = make([]float64, e.cfg.n)
	e.dseeds = make([]uint64, e.cfg.n)
	e.bases = make([]uint64, e.cfg.n)
	return e, nil
}

// DirectionSeed returns the seed of direction i (0 ≤ i < n) of step step: the only thing MeZO's seed trick
// stores. FillDirection(dst, seed, name, dist) regenerates the direction of a parameter from it.
func (e *engine) DirectionSeed(step int64, i int) uint64 {
	s := mix64(e.cfg.seed + uint64(step+1)*golden)
	return mix64(s + uint64(i+1)*keyMul)
}

// Forwards returns the number of objective evaluations made so far.
func (e *engine) Forwards() int64 { return e.forwards }

// StepCount returns the number of completed steps.
func (e *engine) StepCount() int64 { return e.steps }

// StateBytes returns the bytes the estimator holds beyond the model: the per-parameter views (slice
// headers, names are shared with the parameters), the n direction seeds and projected gradients, and the
// struct itself. It is O(number of tensors + n), independent of the number of weights.
func (e *engine) StateBytes() int64 {
	return int64(unsafe.Sizeof(*e)) + int64(cap(e.views))*int64(unsafe.Sizeof(pview{})) +
		int64(cap(e.projs)+cap(e.dseeds)+cap(e.bases))*8
}

// resolve fills e.views from params, sorted by name, reusing its storage.
func (e *engine) resolve(params []G.ValueGrad, needGrad bool) error {
	e.views = e.views[:0]
	for _, vg := range params {
		nm, ok := vg.(G.Namer)
		if !ok || nm.Name() == "" {
			return errors.Errorf("%s: parameter of type %T has no name (wrap it in a *solvers.Param)", e.kind, vg)
		}
		name := nm.Name()
		w, ok := vg.Value().(*tensor.Dense)
		if !ok || w == nil {
			return errors.Errorf("%s: parameter %q: value is %T, want *tensor.Dense", e.kind, name, vg.Value())
		}
		v := pview{name: name, key: NameKey(name), decay: e.cfg.decay(name)}
		var g *tensor.Dense
		if needGrad {
			gv, err := vg.Grad()
			if err != nil {
				return errors.Wrapf(err, "%s: parameter %q has no gradient", e.kind, name)
			}
			if g, ok = gv.(*tensor.Dense); !ok || g == nil {
				return errors.Errorf("%s: parameter %q: gradient is %T, want *tensor.Dense", e.kind, name, gv)
			}
			if g.Dtype() != w.Dtype() || g.Shape().TotalSize() != w.Shape().TotalSize() {
				return errors.Errorf("%s: parameter %q: gradient dtype/shape differs from the value's", e.kind, name)
			}
		}
		switch w.Dtype() {
		case tensor.Float32:
			v.w32 = w.Float32s()
			if g != nil {
				v.g32 = g.Float32s()
			}
		case tensor.Float64:
			v.w64 = w.Float64s()
			if g != nil {
				v.g64 = g.Float64s()
			}
		default:
			return errors.Errorf("%s: parameter %q: dtype %v not supported (float32, float64 are)", e.kind, name, w.Dtype())
		}
		e.views = append(e.views, v)
	}
	if len(e.views) == 0 {
		return errors.Errorf("%s: no parameters", e.kind)
	}
	slices.SortFunc(e.views, func(a, b pview) int { return strings.Compare(a.name, b.name) })
	for i := 1; i < len(e.views); i++ {
		if e.views[i].name == e.views[i-1].name {
			return errors.Errorf("%s: parameter name %q appears twice", e.kind, e.views[i].name)
		}
	}
	return nil
}

// begin prepares step e.steps: direction seeds, the block and the mask seed.
func (e *engine) begin() {
	for i := range e.dseeds {
		e.dseeds[i] = e.DirectionSeed(e.steps, i)
	}
	e.lo, e.hi = 0, len(e.views)
	if e.cfg.blockWise {
		e.lo = int(e.steps % int64(len(e.views)))
		e.hi = e.lo + 1
	}
	epoch := uint64(e.steps / int64(e.cfg.maskEvery))
	e.mbase = mix64(e.cfg.seed ^ maskTag ^ (epoch+1)*golden)
	e.eps = e.cfg.eps
	if e.cfg.epsSched != nil {
		e.eps = e.cfg.epsSched.At(int(e.steps))
	}
}

func (e *engine) eval(obj Objective) (float64, error) {
	e.forwards++
	l, err := obj()
	if err == nil && (math.IsNaN(l) || math.IsInf(l, 0)) {
		err = errors.Errorf("%s: objective returned a non-finite loss %v", e.kind, l)
	}
	return l, err
}

// perturb adds c·z_i to the weights of the block (θ += c z with c = ±ε, ∓2ε).
func (e *engine) perturb(i int, c float64) {
	sp := e.cfg.sparsity
	for k := e.lo; k < e.hi; k++ {
		v := &e.views[k]
		base := streamBase(e.dseeds[i], v.key)
		mb := streamBase(e.mbase, v.key)
		if v.w32 != nil {
			addDir(v.w32, base, mb, sp, e.cfg.dist, c)
		} else {
			addDir(v.w64, base, mb, sp, e.cfg.dist, c)
		}
	}
}

func addDir[T solvers.Float](w []T, base, mb uint64, sparsity float64, dist Dist, c float64) {
	for j := range w {
		if sparsity > 0 && !keep(mb, j, sparsity) {
			continue
		}
		w[j] += T(c * zAt(base, j, dist))
	}
}

// probe evaluates the n projected gradients of this step, leaving the weights where they were (up to
// rounding: +εz, −2εz, +εz, as MeZO's zo_step). It fills e.projs with proj_i/n (or sign(proj_i)/n) and
// returns the loss: L(θ) when it was evaluated (one-sided, conservative), else the mean of
// (L(θ+εz)+L(θ−εz))/2, which equals L(θ) + O(ε²).
func (e *engine) probe(obj Objective, needL0 bool) (loss, l0 float64, err error) {
	if e.cfg.oneSided || needL0 {
		if l0, err = e.eval(obj); err != nil {
			return 0, 0, err
		}
	}
	eps := e.eps
	n := float64(e.cfg.n)
	sum := 0.0
	for i := range e.projs {
		e.perturb(i, eps)
		lp, err := e.eval(obj)
		if err != nil {
			e.perturb(i, -eps)
			return 0, 0, err
		}
		var proj float64
		if e.cfg.oneSided {
			e.perturb(i, -eps)
			proj = (lp - l0) / eps
		} else {
			e.perturb(i, -2*eps)
			lm, err := e.eval(obj)
			e.perturb(i, eps)
			if err != nil {
				return 0, 0, err
			}
			proj = (lp - lm) / (2 * eps)
			sum += (lp + lm) / 2
		}
		if math.IsNaN(proj) || math.IsInf(proj, 0) {
			return 0, 0, errors.Errorf("%s: non-finite projected gradient at step %d", e.kind, e.steps)
		}
		if e.cfg.sign {
			switch {
			case proj > 0:
				proj = 1
			case proj < 0:
				proj = -1
			}
		}
		e.projs[i] = proj / n
	}
	if e.cfg.oneSided || needL0 {
		return l0, l0, nil
	}
	return sum / n, l0, nil
}

// applyDir adds c·ĝ to the weights of the block, and, when decay > 0, also −decay·θ to the decayed
// parameters: θ ← θ + c·ĝ − decay·θ in one pass, as MeZO's zo_update (θ − η(proj z + λθ)).
func (e *engine) applyDir(c, decay float64) {
	for k := e.lo; k < e.hi; k++ {
		v := &e.views[k]
		for i := range e.bases {
			e.bases[i] = streamBase(e.dseeds[i], v.key)
		}
		mb := streamBase(e.mbase, v.key)
		d := 0.0
		if v.decay {
			d = decay
		}
		if v.w32 != nil {
			applyKernel(v.w32, e.bases, e.projs, mb, e.cfg.sparsity, e.cfg.dist, c, d)
		} else {
			applyKernel(v.w64, e.bases, e.projs, mb, e.cfg.sparsity, e.cfg.dist, c, d)
		}
	}
}

func applyKernel[T solvers.Float](w []T, bases []uint64, projs []float64, mb uint64, sparsity float64, dist Dist, c, d float64) {
	for j := range w {
		wj := float64(w[j])
		upd := -d * wj
		if sparsity <= 0 || keep(mb, j, sparsity) {
			u := 0.0
			for i, b := range bases {
				u += projs[i] * zAt(b, j, dist)
			}
			upd += c * u
		}
		w[j] = T(wj + upd)
	}
}

// writeGrad sets the gradients of all parameters: ĝ on the block, 0 elsewhere.
func (e *engine) writeGrad() {
	for k := range e.views {
		v := &e.views[k]
		if k < e.lo || k >= e.hi {
			if v.g32 != nil {
				clear(v.g32)
			} else {
				clear(v.g64)
			}
			continue
		}
		for i := range e.bases {
			e.bases[i] = streamBase(e.dseeds[i], v.key)
		}
		mb := streamBase(e.mbase, v.key)
		if v.g32 != nil {
			gradKernel(v.g32, e.bases, e.projs, mb, e.cfg.sparsity, e.cfg.dist)
		} else {
			gradKernel(v.g64, e.bases, e.projs, mb, e.cfg.sparsity, e.cfg.dist)
		}
	}
}

func gradKernel[T solvers.Float](g []T, bases []uint64, projs []float64, mb uint64, sparsity float64, dist Dist) {
	for j := range g {
		if sparsity > 0 && !keep(mb, j, sparsity) {
			g[j] = 0
			continue
		}
		u := 0.0
		for i, b := range bases {
			u += projs[i] * zAt(b, j, dist)
		}
		g[j] = T(u)
	}
}

// Estimator is the SPSA / MeZO gradient estimator that fills the gradients of gorgonia.ValueGrads, so that
// any gradlab solver steps on them: ZO-SGD (solvers "sgd"), ZO-SGD-MMT (ZO-Bench: momentum SGD fed ĝ,
// solvers "sgd" with WithMomentum), ZO-Adam ("adam"/"adamw"), ZO-Lion... (REFERENCE §3.0–3.2; ZO-Bench
// trainer.py sets param.grad = projected_grad·z and calls the base optimizer). Per step, for directions
// z_1..z_n regenerated from per-step seeds (never stored),
//
//	proj_i = (L(θ+εz_i) − L(θ−εz_i))/(2ε)      (two-sided, MeZO zo_step; 2n forwards)
//	proj_i = (L(θ+εz_i) − L(θ))/ε              (one-sided; n+1 forwards)
//	ĝ = (1/n) Σ_i proj_i z_i                   (sign variant: sign(proj_i) z_i)
//
// (Malladi et al., "Fine-Tuning Language Models with Just Forward Passes", Alg. 1 and App. on n-SPSA;
// Spall 1992 with Rademacher z). The Estimator holds O(1) memory; the gradient buffers (P values) and the
// solver's state belong to the caller.
type Estimator struct {
	engine
}

// NewEstimator returns an estimator with MeZO's defaults (ε = 1e-3, one Gaussian direction, two-sided).
// Options that only make sense for the fused update (WithLR, WithWeightDecay, WithConservative, ...) are
// rejected: the solver that consumes ĝ owns them.
func NewEstimator(opts ...Option) (*Estimator, error) {
	e, err := newEngine("zeroth.Estimator", opts)
	if err != nil {
		return nil, err
	}
	if e.cfg.fusedOnly != "" {
		return nil, errors.Errorf("zeroth.Estimator: %s applies to the fused MeZO step only; give it to the solver", e.cfg.fusedOnly)
	}
	return &Estimator{engine: e}, nil
}

// Estimate perturbs the parameters in place, evaluates obj 2n times (n+1 one-sided) and overwrites the
// parameters' gradients with ĝ (0 outside the perturbed block); the weights are restored by subtraction
// (+εz, −2εz, +εz) and end within a few ulps of where they were. It returns the loss at θ (see probe).
// On an objective error the weights are restored, the gradients are left zeroed and the step counter
// does not advance.
func (e *Estimator) Estimate(params []G.ValueGrad, obj Objective) (float64, error) {
	if err := e.resolve(params, true); err != nil {
		return 0, err
	}
	e.begin()
	loss, _, err := e.probe(obj, false)
	if err != nil {
		for k := range e.views {
			v := &e.views[k]
			clear(v.g32)
			clear(v.g64)
		}
		return 0, err
	}
	e.writeGrad()
	e.steps++
	return loss, nil
}

// MeZO is the fused in-place zeroth-order SGD of Malladi et al. ("Fine-Tuning Language Models with Just
// Forward Passes", Algorithm 1; princeton-nlp/MeZO large_models/trainer.py zo_step + zo_update): after the
// probe it regenerates z from the step's seeds and updates
//
//	θ ← θ − η(ĝ + λθ)   for decayed parameters,   θ ← θ − ηĝ   for biases and norm gains,
//
// element by element, with ĝ = (1/n)Σ proj_i z_i. No gradient buffer and no optimizer state exist: the
// extra memory is O(1) beyond inference (StateBytes; a step allocates nothing). With WithSign it is
// ZO-SGD-Sign, with WithConservative ZO-SGD-Cons, with WithSparsity / WithBlockWise the sparse and
// block-wise schemes of ZO-Bench ("Revisiting Zeroth-Order Optimization for Memory-Efficient LLM
// Fine-Tuning: A Benchmark").
type MeZO struct {
	engine
}

// NewMeZO returns a fused MeZO optimizer; the defaults are MeZO's (ε = 1e-3, lr 1e-6, λ = 0).
func NewMeZO(opts ...Option) (*MeZO, error) {
	e, err := newEngine("zeroth.MeZO", opts)
	if err != nil {
		return nil, err
	}
	return &MeZO{engine: e}, nil
}

// LR returns the learning rate of the next step.
func (m *MeZO) LR() float64 {
	if m.cfg.lrSched != nil {
		return m.cfg.lrSched.At(int(m.steps))
	}
	return m.cfg.lr
}

// SetLR sets a constant learning rate (replacing any schedule) from the next step on.
func (m *MeZO) SetLR(lr float64) error {
	if err := WithLR(lr)(&m.cfg); err != nil {
		return err
	}
	m.cfg.lrSched = nil
	return nil
}

// Step runs one MeZO step on params with the forward-only objective obj and returns the loss at the
// starting point (for conservative steps: the loss at the point kept). Parameters need no gradient.
// On an objective error the weights are back where they started (up to rounding) and the step counter
// does not advance.
func (m *MeZO) Step(params []G.ValueGrad, obj Objective) (float64, error) {
	if err := m.resolve(params, false); err != nil {
		return 0, err
	}
	lr := m.LR()
	if !(lr >= 0) || math.IsInf(lr, 0) {
		return 0, errors.Errorf("zeroth.MeZO: learning rate %v at step %d is not finite and non-negative", lr, m.steps)
	}
	m.begin()
	loss, l0, err := m.probe(obj, m.cfg.conservative)
	if err != nil {
		return 0, err
	}
	if !m.cfg.conservative {
		m.applyDir(-lr, lr*m.cfg.wd)
		m.steps++
		return loss, nil
	}
	// ZO-SGD-Cons (ZO-Bench zo_conserv_step): try θ − ηĝ, then θ + ηĝ, keep the lowest of the three.
	m.applyDir(-lr, 0)
	l1, err := m.eval(obj)
	if err != nil {
		m.applyDir(lr, 0)
		return 0, err
	}
	m.applyDir(2*lr, 0)
	l2, err := m.eval(obj)
	if err != nil {
		m.applyDir(-lr, 0)
		return 0, err
	}
	kept := l2
	if l1 > l0 {
		if l0 < l2 {
			m.applyDir(-lr, 0) // back to θ
			kept = l0
		}
	} else if l1 < l2 {
		m.applyDir(-2*lr, 0) // to θ − ηĝ
		kept = l1
	}
	m.steps++
	return kept, nil
}
