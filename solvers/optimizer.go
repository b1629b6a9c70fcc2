package solvers

import (
	"sort"
	"sync"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/solvers/schedule"
)

// maxBufs and maxCoefs bound the per-parameter buffers and per-step scalars of an elementwise rule.
const (
	maxBufs  = 4
	maxCoefs = 12
)

// coefs are the per-step scalars an elementwise rule derives from the step count, learning rate and
// weight decay before its loop (bias corrections, step sizes, ...).
type coefs [maxCoefs]float64

// kernelArgs is what an elementwise kernel reads and writes: the parameter, its gradient (zeroed by the
// kernel once read), the state buffers and the step's scalars.
type kernelArgs[T Float] struct {
	p, g []T
	b    [maxBufs][]T
	c    coefs
}

// rule is the per-parameter part of an optimizer: the state buffers it keeps. A rule is either
// elementwise or tensorwise.
type rule interface {
	bufferNames() []string
	bufferInit(i int) float64
}

// elementwise is a rule where every element of a parameter is updated from the same elements of its
// gradient and buffers and from per-step scalars. Its kernels are fused single passes that also zero the
// gradient; large tensors are split across cores.
type elementwise interface {
	rule
	// coefs fills c for a parameter whose state st has just reached step st.step (from 1), with the
	// learning rate lr and the weight decay wd that applies to it (0 when masked out). Rules that keep
	// per-parameter scalars (NAdam's running product) keep them in st.scal.
	coefs(st *paramState, lr, wd float64, c *coefs)
	run32(a *kernelArgs[float32], lo, hi int)
	run64(a *kernelArgs[float64], lo, hi int)
}

// tensorwise is a rule that needs whole-tensor quantities (row norms, projections): it updates one
// parameter at a time and zeroes its gradient.
type tensorwise interface {
	rule
	update32(v *view, st *paramState, lr, wd float64)
	update64(v *view, st *paramState, lr, wd float64)
}

// preparer is a rule that needs a quantity over all parameters of the step (a global gradient norm)
// before any update. prepare runs after validation; it must not change anything visible.
type preparer interface {
	prepare(views []view)
}

type job32 struct {
	r elementwise
	a kernelArgs[float32]
}

func (j *job32) runRange(lo, hi int) { j.r.run32(&j.a, lo, hi) }

type job64 struct {
	r elementwise
	a kernelArgs[float64]
}

func (j *job64) runRange(lo, hi int) { j.r.run64(&j.a, lo, hi) }

// lrControl is the learning-rate part shared by every solver: a constant or a schedule, readable and
// settable between steps.
type lrControl struct {
	cfg   *config
	steps int64 // steps taken, the index of the next step for the schedule
}

// LR returns the learning rate the next step will use.
func (l *lrControl) LR() float64 {
	if l.cfg.sched != nil {
		return l.cfg.sched.At(int(l.steps))
	}
	return l.cfg.f("lr")
}

// SetLR replaces the learning rate (and any schedule) by the constant lr from the next step on.
func (l *lrControl) SetLR(lr float64) error {
	if err := l.cfg.set("lr", lr); err != nil {
		return err
	}
	l.cfg.sched = nil
	return nil
}

// SetSchedule makes the learning rate follow s from the next step on; s is indexed by the solver's step count.
func (l *lrControl) SetSchedule(s schedule.Schedule) error {
	if s == nil {
		return errors.New("SetSchedule: nil schedule")
	}
	l.cfg.sched = s
	return nil
}

// StepCount returns the number of steps taken (skipped steps not included).
func (l *lrControl) StepCount() int64 { return l.steps }

// stepLR returns the learning rate of the step about to be taken, checked.
func (l *lrControl) stepLR() (float64, error) {
	lr := l.LR()
	if !isFinite(lr) || lr < 0 {
		return 0, errors.Errorf("%s: learning rate %v at step %d is not a finite non-negative number", l.cfg.kind, lr, l.steps)
	}
	return lr, nil
}

// Hyper returns the current value of hyperparameter key (flags as 0 or 1).
func (l *lrControl) Hyper(key string) (float64, bool) {
	v, ok := l.cfg.vals[key]
	return v, ok
}

// Kind returns the solver's canonical name ("adamw", "sgd", ...).
func (l *lrControl) Kind() string { return l.cfg.kind }

// Optimizer is an elementwise gradlab solver (SGD, Adam, AdamW, RMSprop, ...): a gorgonia.Solver whose
// state is keyed by parameter name and whose step is one fused, allocation-free loop per parameter,
// split across cores for large tensors.
type Optimizer struct {
	lrControl
	rule rule
	reg  registry
	j32  job32
	j64  job64
	wg   sync.WaitGroup
}

// ruleFactory builds the rule of a solver kind from its validated configuration.
type ruleFactory func(c *config) (rule, error)

var ruleFactories = map[string]ruleFactory{}

// newOptimizer builds an elementwise solver of kind with the given hyperparameters and options.
func newOptimizer(kind string, specs []hyperSpec, opts []Option) (*Optimizer, error) {
	c, err := newConfig(kind, specs, opts)
	if err != nil {
		return nil, err
	}
	f, ok := ruleFactories[kind]
	if !ok {
		panic("solvers: no rule registered for " + kind)
	}
	r, err := f(c)
	if err != nil {
		return nil, errors.Wrap(err, kind)
	}
	o := &Optimizer{lrControl: lrControl{cfg: c}, rule: r}
	o.reg.init()
	return o, nil
}

// Step applies one update to every parameter and zeroes the gradients. It validates everything first: on
// any error (bad tensors, a name seen twice, a shape or dtype differing from the state, a non-finite
// gradient under the default policy) nothing is changed.
func (o *Optimizer) Step(params []G.ValueGrad) error {
	views, err := o.reg.resolve(params)
	if err != nil {
		return errors.Wrap(err, o.cfg.kind)
	}
	if skip, err := o.reg.screen(views, o.cfg.nonFinite); skip || err != nil {
		return errors.Wrap(err, o.cfg.kind) // nil when skipped
	}
	lr, err := o.stepLR()
	if err != nil {
		return err
	}
	if p, ok := o.rule.(preparer); ok {
		p.prepare(views)
	}
	for i := range views {
		o.update(&views[i], lr)
	}
	o.steps++
	return nil
}

// update runs the rule's kernel over one parameter.
func (o *Optimizer) update(v *view, lr float64) {
	st := o.reg.state(v, o.rule.bufferNames, o.rule.bufferInit)
	st.step++
	wd := 0.0
	if w, ok := o.cfg.vals["weight_decay"]; ok && (o.cfg.mask == nil || o.cfg.mask(v.name, v.shape)) {
		wd = w
	}
	if tw, ok := o.rule.(tensorwise); ok {
		if v.dtype == tensor.Float32 {
			tw.update32(v, st, lr, wd)
		} else {
			tw.update64(v, st, lr, wd)
		}
		return
	}
	ew := o.rule.(elementwise)
	if v.dtype == tensor.Float32 {
		j := &o.j32
		j.r = ew
		j.a.p, j.a.g = v.w32, v.g32
		copy(j.a.b[:], st.b32)
		ew.coefs(st, lr, wd, &j.a.c)
		parallelRange(len(v.w32), j, &o.wg)
		j.a = kernelArgs[float32]{}
		return
	}
	j := &o.j64
	j.r = ew
	j.a.p, j.a.g = v.w64, v.g64
	copy(j.a.b[:], st.b64)
	ew.coefs(st, lr, wd, &j.a.c)
	parallelRange(len(v.w64), j, &o.wg)
	j.a = kernelArgs[float64]{}
}

// StateBytes returns the memory held by the optimizer state.
func (o *Optimizer) StateBytes() int64 { return o.reg.bytes() }

// SkippedSteps returns how many steps were skipped for non-finite gradients under SkipNonFinite.
func (o *Optimizer) SkippedSteps() int64 { return o.reg.skipped }

// ParamStep returns the step counter of the named parameter (0 if it has no state).
func (o *Optimizer) ParamStep(name string) int64 {
	if s, ok := o.reg.states[name]; ok {
		return s.step
	}
	return 0
}

// Solver is what every gradlab optimizer offers beyond gorgonia.Solver: its name, its learning rate
// (readable and settable between steps) and the size of its state.
type Solver interface {
	G.Solver
	// Kind returns the canonical name of the method ("adamw", "sgd", "lookahead", ...).
	Kind() string
	// LR returns the learning rate of the next step.
	LR() float64
	// SetLR sets a constant learning rate from the next step on.
	SetLR(lr float64) error
	// SetSchedule makes the learning rate follow a schedule from the next step on.
	SetSchedule(s schedule.Schedule) error
	// StateBytes returns the memory the optimizer state holds.
	StateBytes() int64
}

// Constructor builds a solver from options.
type Constructor func(opts ...Option) (Solver, error)

var constructors = map[string]Constructor{}

func register(kind string, c Constructor) { constructors[kind] = c }

// registerOptimizer registers an elementwise solver's constructor under kind.
func registerOptimizer(kind string, f func(...Option) (*Optimizer, error)) {
	register(kind, func(opts ...Option) (Solver, error) { return f(opts...) })
}

func init() {
	for kind, f := range map[string]func(...Option) (*Optimizer, error){
		"sgd": NewSGD, "adam": NewAdam, "adamw": NewAdamW, "adamax": NewAdamax, "nadam": NewNAdam,
		"radam": NewRAdam, "adagrad": NewAdaGrad, "adadelta": NewAdaDelta, "rmsprop": NewRMSprop,
	} {
		registerOptimizer(kind, f)
	}
}

// New builds the solver registered under kind (see Kinds) with the given options.
func New(kind string, opts ...Option) (Solver, error) {
	c, ok := constructors[kind]
	if !ok {
		return nil, errors.Errorf("unknown solver %q (known: %v)", kind, Kinds())
	}
	return c(opts...)
}

// Kinds lists the names of the solvers New can build, sorted.
func Kinds() []string {
	ks := make([]string, 0, len(constructors))
	for k := range constructors {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
