package solvers

import (
	"math"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// NormGrowth is Fira's norm-growth limiter (Chen et al., "Fira: Can We Achieve Full-rank Training of LLMs
// Under Low-rank Constraint?", §"Norm-growth limiter"), applied per tensor to the gradient before the
// wrapped solver's step: if ‖S_t‖ > γ‖S_{t−1}‖ then S_t ← γ‖S_{t−1}‖·S_t/‖S_t‖.
//
// It follows the authors' code (xichen-fy/Fira, optimizer_torch/fira_adamw.py, "Norm-Growth Limiter"):
// at a tensor's first step its norm is stored and nothing is limited; afterwards, with n = ‖S_t‖ and
// s the stored norm,
//
//	limiter = max(n/(s + ε), γ)/γ;   S_t ← S_t/limiter;   s ← n/limiter,
//
// so the stored norm is the post-limit norm (γ·s when limited, n otherwise) and ε = 1e-8 guards a zero
// history. Fira applies the limiter to its scaled full-rank residual gradient; this wrapper applies it to
// the raw gradient of each tensor, which is the rule the paper states in general form.
//
// Hyperparameters: gamma (1.01, ≥ 1), eps (1e-8, ≥ 0). State: one stored norm per parameter name, saved
// and loaded. Norms are computed in float64. A non-finite gradient is passed on untouched (the history is
// not updated), so the wrapped solver's non-finite policy applies; the history is updated only when the
// wrapped solver's step succeeds.
type NormGrowth struct {
	wrapper
	cfg     *config
	gamma   float64
	eps     float64
	steps   int64
	hist    registry  // per-parameter state: scal[0] is the stored (post-limit) norm
	next    []float64 // scratch: the norms to store after the step
	pending []*paramState
}

// NewNormGrowth wraps inner with Fira's norm-growth limiter; hyperparameters "gamma", "eps".
func NewNormGrowth(inner Solver, opts ...Option) (*NormGrowth, error) {
	if inner == nil {
		return nil, errors.New("norm_growth: nil inner solver")
	}
	c, err := newConfig("norm_growth", []hyperSpec{
		{key: "gamma", def: 1.01, check: func(v float64) error {
			if v < 1 {
				return errors.New("must be >= 1")
			}
			return nil
		}},
		epsSpec(1e-8),
	}, opts)
	if err != nil {
		return nil, err
	}
	ng := &NormGrowth{wrapper: wrapper{inner: inner}, cfg: c}
	ng.applyConfig()
	ng.hist.init()
	return ng, nil
}

func (ng *NormGrowth) applyConfig() { ng.gamma, ng.eps = ng.cfg.f("gamma"), ng.cfg.f("eps") }

// Kind returns "norm_growth(<inner>)".
func (ng *NormGrowth) Kind() string { return "norm_growth(" + ng.inner.Kind() + ")" }

// StateBytes returns the stored norms' bytes plus the wrapped solver's state.
func (ng *NormGrowth) StateBytes() int64 { return 8*int64(len(ng.hist.states)) + ng.inner.StateBytes() }

// Norm returns the stored (post-limit) gradient norm of parameter name, and whether it has one.
func (ng *NormGrowth) Norm(name string) (float64, bool) {
	s, ok := ng.hist.states[name]
	if !ok {
		return 0, false
	}
	return s.scal[0], true
}

// Step limits the growth of each gradient's norm and steps the wrapped solver.
func (ng *NormGrowth) Step(params []G.ValueGrad) error {
	views, err := ng.hist.resolve(params)
	if err != nil {
		return errors.Wrap(err, "norm_growth")
	}
	if err := ng.validate(params); err != nil {
		return err
	}
	for i := range views {
		if !views[i].gradFinite() {
			// Untouched: the wrapped solver applies its non-finite policy (refuse by default).
			return ng.inner.Step(params)
		}
	}
	ng.next = ng.next[:0]
	for i := range views {
		n := gradNorm(views[i : i+1])
		if !isFinite(n) {
			return errors.Errorf("norm_growth: gradient norm of %q overflows (%v); step refused, nothing changed", views[i].name, n)
		}
		ng.next = append(ng.next, n)
	}
	ng.pending = ng.pending[:0]
	for i := range views {
		v := &views[i]
		s, ok := ng.hist.states[v.name]
		if !ok {
			ns := newParamState(v, []string{}, func(int) float64 { return 0 })
			ns.scal = []float64{0}
			ng.pending = append(ng.pending, ns)
			continue // first sight: the norm is stored as it is
		}
		n := ng.next[i]
		limiter := math.Max(n/(s.scal[0]+ng.eps), ng.gamma) / ng.gamma
		if limiter > 1 {
			if v.g32 != nil {
				normGrowthDivide(v.g32, float32(limiter))
			} else {
				normGrowthDivide(v.g64, limiter)
			}
		}
		ng.next[i] = n / limiter
	}
	if err := ng.inner.Step(params); err != nil {
		return err
	}
	for _, s := range ng.pending {
		ng.hist.states[s.name] = s
		ng.hist.order = append(ng.hist.order, s.name)
	}
	for i := range views {
		s := ng.hist.states[views[i].name]
		s.scal[0] = ng.next[i]
		s.step++
	}
	ng.steps++
	return nil
}

// normGrowthDivide divides x by c elementwise (a division, as the reference's scaling_grad / limiter).
func normGrowthDivide[T Float](x []T, c T) {
	for i := range x {
		x[i] /= c
	}
}

func (ng *NormGrowth) saveState(prefix string, w *stateWriter) error {
	if err := saveConfig(prefix, ng.cfg, ng.steps, w); err != nil {
		return err
	}
	if err := saveStates(prefix, &ng.hist, w); err != nil {
		return err
	}
	return ng.saveInner(prefix, w)
}

func (ng *NormGrowth) loadState(prefix string, r *stateReader) (func(), error) {
	c, steps, err := loadConfig(prefix, ng.cfg, r)
	if err != nil {
		return nil, err
	}
	states, order, skipped, err := loadStates(prefix, r, []string{})
	if err != nil {
		return nil, err
	}
	for _, s := range states {
		if len(s.scal) != 1 || !isFinite(s.scal[0]) || s.scal[0] < 0 {
			return nil, errors.Errorf("norm_growth: parameter %q lacks a valid stored norm", s.name)
		}
	}
	commitInner, err := ng.loadInner(prefix, r)
	if err != nil {
		return nil, err
	}
	return func() {
		*ng.cfg = *c
		ng.applyConfig()
		ng.steps = steps
		ng.hist.states, ng.hist.order, ng.hist.skipped = states, order, skipped
		ng.hist.init()
		commitInner()
	}, nil
}
