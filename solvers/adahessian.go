package solvers

import (
	"math"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// AdaHessian is the adaptive second-order optimizer of Yao, Gholami, Shen, Mustafa, Keutzer & Mahoney,
// "ADAHESSIAN: An Adaptive Second Order Optimizer for Machine Learning", following the authors' code
// amirgholami/adahessian (image_classification/optim_adahessian.py; the 3-D case from
// instruction/adahessian.py). Per parameter, with z Rademacher and Hz a finite-difference Hessian-vector
// product (Curvature.HVP; the reference uses double backward):
//
//	D = blockavg(|z ⊙ Hz|)        (mean over `probes` probes of z ⊙ Hz, then |·|; one probe as the reference)
//	m ← β1·m + (1−β1)·g;   v ← β2·v + (1−β2)·D²
//	denom = (√v)^k / (√bc2)^k + ε,  bc_i = 1 − β_i^t
//	θ ← θ − η·(m/bc1/denom + λ·θ)
//
// blockavg follows the reference: 0-, 1- and 2-D tensors are not averaged (Hessian block size 1); a 3-D
// tensor (1-D conv kernel) is averaged over its last axis, a 4-D tensor (2-D conv kernel, Gorgonia's
// (out, in, kh, kw) layout as torch's) over its last two axes; higher orders are averaged over every axis
// after the second. Weight decay λ is the reference's: added to the update, scaled by η, not by the
// preconditioner.
//
// It needs a closure: one StepClosure costs 1 + 2·probes closure calls. The probes are drawn from a
// counter-based generator keyed by the seed and the number of probes drawn so far, so the state (moments,
// step counts, probe counter) round-trips bit for bit. Hyperparameters (defaults, the reference's): lr
// (0.15), beta1 (0.9), beta2 (0.999), eps (1e-4), weight_decay (0), hessian_power k (1, in [0, 1]), probes
// (1), seed (0).
type AdaHessian struct {
	lrControl
	reg    registry
	curv   Curvature
	probes uint64 // probes drawn so far (the RNG stream counter)
	g, d   []float64
}

func init() {
	register("adahessian", func(opts ...Option) (Solver, error) { return NewAdaHessian(opts...) })
}

func curvSeedSpec() hyperSpec {
	return hyperSpec{key: "seed", def: 0, check: func(v float64) error {
		if v < 0 || v != math.Trunc(v) || v > 1<<53 {
			return errors.New("must be a non-negative integer below 2^53")
		}
		return nil
	}}
}

// NewAdaHessian builds an AdaHessian solver.
func NewAdaHessian(opts ...Option) (*AdaHessian, error) {
	c, err := newConfig("adahessian", []hyperSpec{
		lrSpec(0.15), betaSpec("beta1", 0.9), betaSpec("beta2", 0.999), epsSpec(1e-4), wdSpec(0),
		{key: "hessian_power", def: 1, check: closedUnit},
		{key: "probes", def: 1, check: positiveInt},
		curvSeedSpec(),
	}, opts)
	if err != nil {
		return nil, err
	}
	return &AdaHessian{lrControl: lrControl{cfg: c}}, nil
}

// Kind returns "adahessian".
func (a *AdaHessian) Kind() string { return "adahessian" }

// StateBytes returns the bytes of the two moment buffers per parameter.
func (a *AdaHessian) StateBytes() int64 { return a.reg.bytes() }

// Step returns an error: AdaHessian needs Hessian-vector products and so a closure.
func (a *AdaHessian) Step([]G.ValueGrad) error {
	return errors.New("adahessian: needs a closure for its Hessian-vector products; call StepClosure")
}

func adahessianBuffers() []string { return []string{"exp_avg", "exp_hessian_diag_sq"} }

// curvFlatGrow returns b with length n, reallocating only when it is too small.
func curvFlatGrow(b []float64, n int) []float64 {
	if cap(b) < n {
		return make([]float64, n)
	}
	return b[:n]
}

// StepClosure takes one AdaHessian step and returns the loss at the starting parameters. A closure error
// or a non-finite gradient or curvature leaves weights and state unchanged (SkipNonFinite: skipped
// silently).
func (a *AdaHessian) StepClosure(params []G.ValueGrad, closure Closure) (float64, error) {
	views, err := a.reg.resolve(params)
	if err != nil {
		return 0, errors.Wrap(err, "adahessian")
	}
	if err := a.curv.Bind(params, closure); err != nil {
		return 0, errors.Wrap(err, "adahessian")
	}
	lr, err := a.stepLR()
	if err != nil {
		return 0, err
	}
	n := a.curv.Dim()
	a.g, a.d = curvFlatGrow(a.g, n), curvFlatGrow(a.d, n)
	loss, err := a.curv.Gradient(a.g)
	if err == nil && !isFinite(loss) {
		err = errors.Errorf("loss %v is not finite", loss)
	}
	probes := int(a.cfg.f("probes"))
	seed := uint64(a.cfg.f("seed"))
	if err == nil {
		clear(a.d)
		for p := 0; p < probes && err == nil; p++ {
			RademacherProbe(a.curv.z, seed, a.probes+uint64(p))
			if err = a.curv.HVP(a.curv.z, a.curv.hz); err == nil {
				for i := range a.d {
					a.d[i] += a.curv.z[i] * a.curv.hz[i]
				}
			}
		}
	}
	if err != nil {
		if a.cfg.nonFinite == SkipNonFinite {
			a.reg.skipped++
			return loss, nil
		}
		return loss, errors.Wrap(err, "adahessian: step refused, nothing changed")
	}
	a.probes += uint64(probes)
	inv := 1 / float64(probes)
	for i := range a.d {
		a.d[i] = math.Abs(a.d[i] * inv)
	}
	b1, b2, eps, wd, k := a.cfg.f("beta1"), a.cfg.f("beta2"), a.cfg.f("eps"), a.cfg.f("weight_decay"), a.cfg.f("hessian_power")
	off := 0
	for i := range views {
		v := &views[i]
		sz := v.size()
		d := a.d[off : off+sz]
		g := a.g[off : off+sz]
		off += sz
		adahessianBlockAvg(d, v.shape)
		st := a.reg.state(v, adahessianBuffers, zeroInit)
		st.step++
		bc1 := 1 - math.Pow(b1, float64(st.step))
		sbc2k := math.Pow(math.Sqrt(1-math.Pow(b2, float64(st.step))), k)
		if v.w32 != nil {
			adahessianUpdate(v.w32, g, d, st.b32[0], st.b32[1], b1, b2, bc1, sbc2k, k, eps, wd, lr)
		} else {
			adahessianUpdate(v.w64, g, d, st.b64[0], st.b64[1], b1, b2, bc1, sbc2k, k, eps, wd, lr)
		}
	}
	a.steps++
	return loss, nil
}

func adahessianUpdate[T Float](p []T, g, d []float64, m, v []T, b1, b2, bc1, sbc2k, k, eps, wd, lr float64) {
	for i := range p {
		mi := T(b1)*m[i] + T(1-b1)*T(g[i])
		di := T(d[i])
		vi := T(b2)*v[i] + T(1-b2)*di*di
		m[i], v[i] = mi, vi
		var root float64
		if k == 1 {
			root = math.Sqrt(float64(vi))
		} else {
			root = math.Pow(math.Sqrt(float64(vi)), k)
		}
		denom := T(root/sbc2k + eps)
		p[i] = p[i] - T(lr)*(mi/T(bc1)/denom+T(wd)*p[i])
	}
}

// adahessianBlockAvg replaces d (one parameter's |z⊙Hz|) by its block average as the reference does.
func adahessianBlockAvg(d []float64, shape []int) {
	if len(shape) <= 2 {
		return
	}
	block := 1
	for _, s := range shape[2:] {
		block *= s
	}
	if len(shape) == 3 {
		block = shape[2]
	}
	if block <= 1 {
		return
	}
	for lo := 0; lo+block <= len(d); lo += block {
		var s float64
		for _, x := range d[lo : lo+block] {
			s += x
		}
		s /= float64(block)
		for i := lo; i < lo+block; i++ {
			d[i] = s
		}
	}
}

func (a *AdaHessian) saveState(prefix string, w *stateWriter) error {
	if err := saveConfig(prefix, a.cfg, a.steps, w); err != nil {
		return err
	}
	if err := w.putMeta(prefix+"probes_drawn", a.probes); err != nil {
		return err
	}
	return saveStates(prefix, &a.reg, w)
}

func (a *AdaHessian) loadState(prefix string, r *stateReader) (func(), error) {
	c, steps, err := loadConfig(prefix, a.cfg, r)
	if err != nil {
		return nil, err
	}
	var drawn uint64
	if err := r.getMeta(prefix+"probes_drawn", &drawn); err != nil {
		return nil, err
	}
	states, order, skipped, err := loadStates(prefix, r, adahessianBuffers())
	if err != nil {
		return nil, err
	}
	return func() {
		*a.cfg = *c
		a.steps, a.probes = steps, drawn
		a.reg.init()
		a.reg.states, a.reg.order, a.reg.skipped = states, order, skipped
	}, nil
}
