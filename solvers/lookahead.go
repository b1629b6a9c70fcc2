package solvers

import (
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// Pullback modes of Lookahead: what happens to the inner solver's momentum at a synchronisation.
const (
	PullbackNone  = 0 // momentum kept as is
	PullbackReset = 1 // momentum buffer set to zero
	PullbackPull  = 2 // momentum interpolated like the weights (see Lookahead)
)

// WithPullback sets Lookahead's pullback mode by the reference's name: "none", "reset" or "pullback".
func WithPullback(mode string) Option {
	return func(c *config) error {
		code := map[string]float64{"none": PullbackNone, "reset": PullbackReset, "pullback": PullbackPull}
		v, ok := code[mode]
		if !ok {
			return errors.Errorf("%s: unknown pullback mode %q (none, reset, pullback)", c.kind, mode)
		}
		return c.set("pullback_momentum", v)
	}
}

// Lookahead wraps any solver (Zhang, Lucas, Hinton & Ba, "Lookahead Optimizer: k steps forward, 1 step
// back"), following the first author's reference code (michaelrzhang/lookahead, lookahead_pytorch.py):
// every step runs the inner solver; every k steps each parameter is pulled toward its slow copy,
// p ← α·p + (1−α)·slow, and slow ← p (slow starts at the parameters' first-seen values).
//
// Pullback modes act on the inner SGD's momentum buffer at a sync: "reset" zeroes it; "pullback"
// interpolates it with a cached copy, b ← α·b + (1−α)·cached, cached ← b. The reference stores the buffer
// itself as the cache (an alias, not a copy), so from the second sync on the effect is b ← α(2−α)·b; this
// is reproduced, since it is what the reference computes.
//
// Hyperparameters (defaults): k (5), alpha (0.5, the paper's; the reference code's default is 0.8),
// pullback_momentum (none; set with WithPullback). Pullback modes need an inner solver with a momentum
// buffer (SGD with momentum).
type Lookahead struct {
	wrapper
	cfg     *config
	k       int64
	alpha   float64
	mode    int
	laStep  int64
	slow    registry
	pending []*paramState
}

// NewLookahead wraps inner.
func NewLookahead(inner Solver, opts ...Option) (*Lookahead, error) {
	if inner == nil {
		return nil, errors.New("lookahead: nil inner solver")
	}
	c, err := newConfig("lookahead", []hyperSpec{
		{key: "k", def: 5, check: positiveInt},
		{key: "alpha", def: 0.5, check: closedUnit},
		{key: "pullback_momentum", def: PullbackNone, check: func(v float64) error {
			if v != PullbackNone && v != PullbackReset && v != PullbackPull {
				return errors.New("must be 0 (none), 1 (reset) or 2 (pullback)")
			}
			return nil
		}},
	}, opts)
	if err != nil {
		return nil, err
	}
	l := &Lookahead{wrapper: wrapper{inner: inner}, cfg: c}
	l.applyConfig()
	if l.mode != PullbackNone {
		o, ok := inner.(*Optimizer)
		if !ok || o.cfg.kind != "sgd" || o.cfg.f("momentum") == 0 {
			return nil, errors.Errorf("lookahead: pullback mode needs an inner solver with a momentum buffer (sgd with momentum), got %s", inner.Kind())
		}
	}
	l.slow.init()
	return l, nil
}

func (l *Lookahead) applyConfig() {
	l.k, l.alpha, l.mode = int64(l.cfg.f("k")), l.cfg.f("alpha"), int(l.cfg.f("pullback_momentum"))
}

// Kind returns "lookahead".
func (l *Lookahead) Kind() string { return "lookahead" }

// StateBytes returns the slow weights' bytes plus the inner solver's state.
func (l *Lookahead) StateBytes() int64 { return l.slow.bytes() + l.inner.StateBytes() }

// Step runs the inner solver and synchronises with the slow weights every k steps.
func (l *Lookahead) Step(params []G.ValueGrad) error {
	views, err := l.slow.resolve(params)
	if err != nil {
		return errors.Wrap(err, "lookahead")
	}
	// Slow copies of parameters seen for the first time are taken before the inner step and kept only
	// if it succeeds.
	l.pending = l.pending[:0]
	for i := range views {
		v := &views[i]
		if _, ok := l.slow.states[v.name]; !ok {
			s := newParamState(v, []string{"cached_params"}, func(int) float64 { return 0 })
			if s.b32 != nil {
				copy(s.b32[0], v.w32)
			} else {
				copy(s.b64[0], v.w64)
			}
			s.scal = []float64{0} // 1 once the pullback cache aliases the momentum buffer
			l.pending = append(l.pending, s)
		}
	}
	if err := l.inner.Step(params); err != nil {
		return err
	}
	for _, s := range l.pending {
		l.slow.states[s.name] = s
		l.slow.order = append(l.slow.order, s.name)
	}
	l.laStep++
	if l.laStep < l.k {
		return nil
	}
	l.laStep = 0
	for i := range views {
		v := &views[i]
		s := l.slow.states[v.name]
		s.step++
		if v.w32 != nil {
			syncSlow(v.w32, s.b32[0], float32(l.alpha))
		} else {
			syncSlow(v.w64, s.b64[0], l.alpha)
		}
		if l.mode != PullbackNone {
			l.pullback(v.name, s)
		}
	}
	return nil
}

func syncSlow[T Float](p, slow []T, alpha T) {
	for i := range p {
		p[i] = p[i]*alpha + (1-alpha)*slow[i]
		slow[i] = p[i]
	}
}

// pullback applies the pullback mode to the inner momentum buffer of parameter name.
func (l *Lookahead) pullback(name string, s *paramState) {
	st, ok := l.inner.(*Optimizer).reg.states[name]
	if !ok {
		return
	}
	b32, b64 := st.buffer("momentum_buffer")
	if l.mode == PullbackReset {
		clear(b32)
		clear(b64)
		return
	}
	aliased := s.scal[0] != 0
	if b32 != nil {
		pullbackBuf(b32, float32(l.alpha), aliased)
	} else {
		pullbackBuf(b64, l.alpha, aliased)
	}
	s.scal[0] = 1
}

// pullbackBuf computes the reference's b.mul_(α).add_((1−α)·cached): with the zero initial cache at the
// first sync, with cached aliasing b (already multiplied) afterwards.
func pullbackBuf[T Float](b []T, alpha T, aliased bool) {
	for i := range b {
		t := b[i] * alpha
		if aliased {
			t += (1 - alpha) * t
		}
		b[i] = t
	}
}

func (l *Lookahead) saveState(prefix string, w *stateWriter) error {
	if err := saveConfig(prefix, l.cfg, l.laStep, w); err != nil {
		return err
	}
	if err := saveStates(prefix, &l.slow, w); err != nil {
		return err
	}
	return l.saveInner(prefix, w)
}

func (l *Lookahead) loadState(prefix string, r *stateReader) (func(), error) {
	c, laStep, err := loadConfig(prefix, l.cfg, r)
	if err != nil {
		return nil, err
	}
	if c.f("pullback_momentum") != l.cfg.f("pullback_momentum") {
		return nil, errors.New("lookahead: state file has another pullback mode")
	}
	states, order, skipped, err := loadStates(prefix, r, []string{"cached_params"})
	if err != nil {
		return nil, err
	}
	for _, s := range states {
		if len(s.scal) != 1 {
			return nil, errors.Errorf("lookahead: parameter %q lacks its pullback flag", s.name)
		}
	}
	commitInner, err := l.loadInner(prefix, r)
	if err != nil {
		return nil, err
	}
	return func() {
		*l.cfg = *c
		l.applyConfig()
		l.laStep = laStep
		l.slow.states, l.slow.order, l.slow.skipped = states, order, skipped
		commitInner()
	}, nil
}

// validate checks params against the slow weights and the inner solver without changing anything.
func (l *Lookahead) validate(params []G.ValueGrad) error {
	if _, err := l.slow.resolve(params); err != nil {
		return errors.Wrap(err, "lookahead")
	}
	return l.wrapper.validate(params)
}
