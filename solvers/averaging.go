package solvers

import (
	"math"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// averager is what EMA and SWA share: the wrapped solver, an averaged copy of every parameter (buffer
// "averaged", keyed by name; paramState.step counts the updates it received), the wrapper's step count,
// and the swap used for evaluation.
type averager struct {
	wrapper
	cfg     *config
	steps   int64 // completed steps of the wrapper (non-finite steps let through by the inner solver excluded)
	avg     registry
	swapped map[string]struct{} // parameters whose averaged copy is swapped in
	rule    averageRule
}

// averageRule is the part that differs between EMA and SWA (an interface, not closures, so that a step
// does not allocate).
type averageRule interface {
	due() bool                     // whether this step (a.steps already counted) updates the averages
	update(v *view, s *paramState) // fold v's weights into s (s.step updates so far)
}

var averagedBufs = []string{"averaged"}

func (a *averager) init(inner Solver, c *config, rule averageRule) {
	a.rule = rule
	a.wrapper = wrapper{inner: inner}
	a.cfg = c
	a.avg.init()
	a.swapped = make(map[string]struct{})
}

// StateBytes returns the averaged copies' bytes plus the wrapped solver's state.
func (a *averager) StateBytes() int64 { return a.avg.bytes() + a.inner.StateBytes() }

// Steps returns the number of steps taken through the wrapper.
func (a *averager) Steps() int64 { return a.steps }

// Averaged returns a copy of the averaged value of parameter name, in its shape and dtype. It is an
// error if the parameter has no average yet or if the average is swapped into the parameter.
func (a *averager) Averaged(name string) (*tensor.Dense, error) {
	s, ok := a.avg.states[name]
	if !ok {
		return nil, errors.Errorf("%s: parameter %q has no averaged copy yet", a.cfg.kind, name)
	}
	if _, sw := a.swapped[name]; sw {
		return nil, errors.Errorf("%s: the average of %q is swapped into the parameter; read the parameter, or swap back", a.cfg.kind, name)
	}
	if s.b32 != nil {
		return tensor.New(tensor.WithShape(s.shape...), tensor.WithBacking(append([]float32(nil), s.b32[0]...))), nil
	}
	return tensor.New(tensor.WithShape(s.shape...), tensor.WithBacking(append([]float64(nil), s.b64[0]...))), nil
}

// Updates returns how many averaging updates parameter name has received (0 if none).
func (a *averager) Updates(name string) int64 {
	if s, ok := a.avg.states[name]; ok {
		return s.step
	}
	return 0
}

// Swapped reports whether any averaged copy is currently swapped into its parameter.
func (a *averager) Swapped() bool { return len(a.swapped) > 0 }

// SwapAveraged exchanges the values of params with their averaged copies, element by element: the first
// call puts the averages into the parameters (for evaluation) and keeps the training weights in their
// place; a second call with the same parameters swaps back, restoring both bit for bit. While any average
// is swapped in, Step and saving the state are refused. Every parameter must have an averaged copy of its
// shape and dtype; on error nothing is swapped.
func (a *averager) SwapAveraged(params []G.ValueGrad) error {
	views, err := a.avg.resolve(params)
	if err != nil {
		return errors.Wrap(err, a.cfg.kind)
	}
	for i := range views {
		if _, ok := a.avg.states[views[i].name]; !ok {
			return errors.Errorf("%s: parameter %q has no averaged copy yet; nothing swapped", a.cfg.kind, views[i].name)
		}
	}
	for i := range views {
		v := &views[i]
		s := a.avg.states[v.name]
		if v.w32 != nil {
			swapValues(v.w32, s.b32[0])
		} else {
			swapValues(v.w64, s.b64[0])
		}
		if _, sw := a.swapped[v.name]; sw {
			delete(a.swapped, v.name)
		} else {
			a.swapped[v.name] = struct{}{}
		}
	}
	return nil
}

func swapValues[T Float](x, y []T) {
	for i := range x {
		x[i], y[i] = y[i], x[i]
	}
}

// step runs the inner solver, then, if the rule says the step is due, updates the average of every
// parameter of the step (new parameters get a fresh state first, with step 0). It returns without
// averaging when the inner solver refused the step, or let a non-finite gradient through (skip or ignore
// policy).
func (a *averager) step(params []G.ValueGrad) error {
	if len(a.swapped) > 0 {
		return errors.Errorf("%s: averaged weights are swapped in; call SwapAveraged again before stepping", a.cfg.kind)
	}
	views, err := a.avg.resolve(params)
	if err != nil {
		return errors.Wrap(err, a.cfg.kind)
	}
	finite := true
	for i := range views {
		if !views[i].gradFinite() {
			finite = false
			break
		}
	}
	if err := a.inner.Step(params); err != nil {
		return err
	}
	if !finite {
		return nil // skipped (or ignored) by the inner solver's policy: not an iterate to average
	}
	a.steps++
	if !a.rule.due() {
		return nil
	}
	for i := range views {
		v := &views[i]
		s, ok := a.avg.states[v.name]
		if !ok {
			s = newParamState(v, averagedBufs, func(int) float64 { return 0 })
			a.avg.states[v.name] = s
			a.avg.order = append(a.avg.order, v.name)
		}
		a.rule.update(v, s)
		s.step++
	}
	return nil
}

func (a *averager) saveState(prefix string, w *stateWriter) error {
	if len(a.swapped) > 0 {
		return errors.Errorf("%s: averaged weights are swapped in; swap back before saving", a.cfg.kind)
	}
	if err := saveConfig(prefix, a.cfg, a.steps, w); err != nil {
		return err
	}
	if err := saveStates(prefix, &a.avg, w); err != nil {
		return err
	}
	return a.saveInner(prefix, w)
}

func (a *averager) loadState(prefix string, r *stateReader) (func(), error) {
	if len(a.swapped) > 0 {
		return nil, errors.Errorf("%s: averaged weights are swapped in; swap back before loading", a.cfg.kind)
	}
	c, steps, err := loadConfig(prefix, a.cfg, r)
	if err != nil {
		return nil, err
	}
	states, order, skipped, err := loadStates(prefix, r, averagedBufs)
	if err != nil {
		return nil, err
	}
	commitInner, err := a.loadInner(prefix, r)
	if err != nil {
		return nil, err
	}
	return func() {
		*a.cfg = *c
		a.steps = steps
		a.avg.states, a.avg.order, a.avg.skipped = states, order, skipped
		commitInner()
	}, nil
}

// EMA keeps an exponential moving average of the weights of any solver (Polyak averaging), keyed by
// parameter name. It follows timm's ModelEmaV3 (huggingface/pytorch-image-models, timm/utils/model_ema.py):
// after the wrapped solver's t-th step of a parameter (t from 1),
//
//	s = max(0, t − update_after_step − 1)
//	d_t = 0 if s = 0;  else decay, or with use_warmup clamp(1 − (1 + s/warmup_gamma)^(−warmup_power), min_decay, decay)
//	θ̄ ← lerp(θ̄, θ, 1 − d_t)
//
// so the first update copies the weights (as torch.optim.swa_utils.AveragedModel does), and lerp is
// torch's: a + w(b − a) for w < 0.5, else b − (b − a)(1 − w), computed in the parameter's dtype.
//
// Hyperparameters (timm's defaults): decay (0.9999, in [0, 1]), min_decay (0), update_after_step (0),
// use_warmup (off), warmup_gamma (1), warmup_power (2/3). The averages are read with Averaged(name) and
// swapped into the parameters for evaluation with SwapAveraged (and swapped back by calling it again).
// A step whose gradients are not finite is not averaged nor counted, whatever the wrapped solver's
// non-finite policy (refused, skipped, or let through).
type EMA struct {
	averager
	decay, minDecay, wGamma, wPower float64
	after                           int64
	warmup                          bool
	lastDecay                       float64
}

// NewEMA wraps inner with an exponential moving average of its iterates.
func NewEMA(inner Solver, opts ...Option) (*EMA, error) {
	if inner == nil {
		return nil, errors.New("ema: nil inner solver")
	}
	c, err := newConfig("ema", []hyperSpec{
		{key: "decay", def: 0.9999, check: closedUnit},
		{key: "min_decay", def: 0, check: closedUnit},
		{key: "update_after_step", def: 0, check: func(v float64) error {
			if v < 0 || v != math.Trunc(v) {
				return errors.New("must be a non-negative integer")
			}
			return nil
		}},
		flagSpec("use_warmup", false),
		{key: "warmup_gamma", def: 1, check: positive},
		{key: "warmup_power", def: 2.0 / 3.0, check: positive},
	}, opts)
	if err != nil {
		return nil, err
	}
	e := &EMA{}
	e.init(inner, c, e)
	e.applyConfig()
	return e, nil
}

func (e *EMA) applyConfig() {
	c := e.cfg
	e.decay, e.minDecay = c.f("decay"), c.f("min_decay")
	e.after, e.warmup = int64(c.f("update_after_step")), c.b("use_warmup")
	e.wGamma, e.wPower = c.f("warmup_gamma"), c.f("warmup_power")
}

// Kind returns "ema".
func (e *EMA) Kind() string { return "ema" }

// LastDecay returns the decay used at the last update (of the last parameter updated).
func (e *EMA) LastDecay() float64 { return e.lastDecay }

// DecayAt returns the decay d_t applied at a parameter's t-th update (t from 1), as timm's get_decay.
func (e *EMA) DecayAt(t int64) float64 {
	s := max(0, t-e.after-1)
	if s <= 0 {
		return 0
	}
	if !e.warmup {
		return e.decay
	}
	d := 1 - math.Pow(1+float64(s)/e.wGamma, -e.wPower)
	return math.Max(math.Min(d, e.decay), e.minDecay)
}

// Step runs the wrapped solver, then updates the moving averages.
func (e *EMA) Step(params []G.ValueGrad) error {
	return e.step(params)
}

func (e *EMA) due() bool { return true }

func (e *EMA) update(v *view, s *paramState) {
	d := e.DecayAt(s.step + 1)
	e.lastDecay = d
	w := 1 - d
	if v.w32 != nil {
		emaLerp(s.b32[0], v.w32, float32(w))
	} else {
		emaLerp(s.b64[0], v.w64, w)
	}
}

// emaLerp is torch.lerp_(avg, p, w) elementwise; the explicit conversions keep each operation rounded
// (no fused multiply-add), so results are the same on every platform.
func emaLerp[T Float](avg, p []T, w T) {
	if w < 0.5 {
		for i := range avg {
			avg[i] += T(w * (p[i] - avg[i]))
		}
		return
	}
	om := 1 - w
	for i := range avg {
		avg[i] = p[i] - T((p[i]-avg[i])*om)
	}
}

func (e *EMA) loadState(prefix string, r *stateReader) (func(), error) {
	commit, err := e.averager.loadState(prefix, r)
	if err != nil {
		return nil, err
	}
	return func() { commit(); e.applyConfig() }, nil
}

// SWA is stochastic weight averaging (Izmailov, Podoprikhin, Garipov, Vetrov & Wilson, "Averaging Weights
// Leads to Wider Optima and Better Generalization", Algorithm 1) around any solver: an equal-weight
// running average of the iterates, taken from step swa_start on, every swa_c_steps steps. As the authors'
// code (timgaripov/swa, train.py and utils.moving_average), when the wrapper's completed step count t
// satisfies t ≥ swa_start and (t − swa_start) mod swa_c_steps = 0,
//
//	α = 1/(n + 1);   θ̄ ← θ̄·(1 − α) + θ·α;   n ← n + 1,
//
// with n the number of models averaged so far for that parameter (the first average copies θ). The
// reference counts epochs; here the cycle is counted in steps. Hyperparameters: swa_start (1),
// swa_c_steps (1), both positive integers. Read the averages with Averaged(name) and swap them in for
// evaluation with SwapAveraged (call again to swap back). Batch-norm statistics, which the reference
// recomputes for the averaged model, are not parameters and are not handled here.
type SWA struct {
	averager
	start, every int64
}

// NewSWA wraps inner with stochastic weight averaging.
func NewSWA(inner Solver, opts ...Option) (*SWA, error) {
	if inner == nil {
		return nil, errors.New("swa: nil inner solver")
	}
	c, err := newConfig("swa", []hyperSpec{
		{key: "swa_start", def: 1, check: positiveInt},
		{key: "swa_c_steps", def: 1, check: positiveInt},
	}, opts)
	if err != nil {
		return nil, err
	}
	s := &SWA{}
	s.init(inner, c, s)
	s.applyConfig()
	return s, nil
}

func (w *SWA) applyConfig() {
	w.start, w.every = int64(w.cfg.f("swa_start")), int64(w.cfg.f("swa_c_steps"))
}

// Kind returns "swa".
func (w *SWA) Kind() string { return "swa" }

// Step runs the wrapped solver, then folds the iterate into the average when due.
func (w *SWA) Step(params []G.ValueGrad) error {
	return w.step(params)
}

func (w *SWA) due() bool { return w.steps >= w.start && (w.steps-w.start)%w.every == 0 }

func (w *SWA) update(v *view, s *paramState) {
	alpha := 1 / float64(s.step+1)
	if v.w32 != nil {
		swaAverage(s.b32[0], v.w32, float32(alpha), float32(1-alpha))
	} else {
		swaAverage(s.b64[0], v.w64, alpha, 1-alpha)
	}
}

// swaAverage is the reference's avg *= (1 − α); avg += p·α, each operation rounded.
func swaAverage[T Float](avg, p []T, alpha, oneMinus T) {
	for i := range avg {
		avg[i] = T(avg[i]*oneMinus) + T(p[i]*alpha)
	}
}

func (w *SWA) loadState(prefix string, r *stateReader) (func(), error) {
	commit, err := w.averager.loadState(prefix, r)
	if err != nil {
		return nil, err
	}
	return func() { commit(); w.applyConfig() }, nil
}
