package solvers

// NewAdaGrad returns AdaGrad (Duchi et al., "Adaptive Subgradient Methods for Online Learning and
// Stochastic Optimization") as torch.optim.Adagrad:
//
//	g ← g + wd·p;  clr = lr/(1 + (t−1)·lr_decay);  S ← S + g²;  p ← p − clr·g/(sqrt(S) + eps)
//
// with S starting at initial_accumulator_value. Hyperparameters (defaults): lr (1e-2), lr_decay (0),
// weight_decay (0), initial_accumulator_value (0), eps (1e-10).
func NewAdaGrad(opts ...Option) (*Optimizer, error) {
	return newOptimizer("adagrad", []hyperSpec{
		lrSpec(1e-2),
		{key: "lr_decay", def: 0, check: nonNegative},
		wdSpec(0),
		{key: "initial_accumulator_value", def: 0, check: nonNegative},
		epsSpec(1e-10),
	}, opts)
}

type adagradRule struct{ lrDecay, init, eps float64 }

func init() {
	ruleFactories["adagrad"] = func(c *config) (rule, error) {
		return &adagradRule{lrDecay: c.f("lr_decay"), init: c.f("initial_accumulator_value"), eps: c.f("eps")}, nil
	}
}

func (r *adagradRule) bufferNames() []string  { return []string{"sum"} }
func (r *adagradRule) bufferInit(int) float64 { return r.init }
func (r *adagradRule) coefs(st *paramState, lr, wd float64, c *coefs) {
	*c = coefs{lr / (1 + float64(st.step-1)*r.lrDecay), r.eps, wd}
}
func (r *adagradRule) run32(a *kernelArgs[float32], lo, hi int) { adagradKernel(a, lo, hi) }
func (r *adagradRule) run64(a *kernelArgs[float64], lo, hi int) { adagradKernel(a, lo, hi) }

func adagradKernel[T Float](a *kernelArgs[T], lo, hi int) {
	clr, eps, wd := T(a.c[0]), T(a.c[1]), T(a.c[2])
	p, g, s := a.p[lo:hi], a.g[lo:hi], a.b[0][lo:hi]
	for i := range p {
		gi := g[i]
		if wd != 0 {
			gi += wd * p[i]
		}
		s[i] += gi * gi
		p[i] -= clr * (gi / (sqrt(s[i]) + eps))
		g[i] = 0
	}
}

// NewAdaDelta returns AdaDelta (Zeiler, "ADADELTA: An Adaptive Learning Rate Method") as
// torch.optim.Adadelta:
//
//	g ← g + wd·p;  E ← ρ·E + (1−ρ)·g²;  Δ = sqrt(D + eps)/sqrt(E + eps)·g;  D ← ρ·D + (1−ρ)·Δ²;  p ← p − lr·Δ
//
// Hyperparameters (defaults, torch's): lr (1), rho (0.9; the paper uses 0.95), eps (1e-6), weight_decay (0).
func NewAdaDelta(opts ...Option) (*Optimizer, error) {
	return newOptimizer("adadelta", []hyperSpec{
		lrSpec(1), {key: "rho", def: 0.9, check: closedUnit}, epsSpec(1e-6), wdSpec(0),
	}, opts)
}

type adadeltaRule struct{ rho, eps float64 }

func init() {
	ruleFactories["adadelta"] = func(c *config) (rule, error) {
		return &adadeltaRule{rho: c.f("rho"), eps: c.f("eps")}, nil
	}
}

func (r *adadeltaRule) bufferNames() []string  { return []string{"square_avg", "acc_delta"} }
func (r *adadeltaRule) bufferInit(int) float64 { return 0 }
func (r *adadeltaRule) coefs(st *paramState, lr, wd float64, c *coefs) {
	*c = coefs{lr, r.rho, 1 - r.rho, r.eps, wd}
}
func (r *adadeltaRule) run32(a *kernelArgs[float32], lo, hi int) { adadeltaKernel(a, lo, hi) }
func (r *adadeltaRule) run64(a *kernelArgs[float64], lo, hi int) { adadeltaKernel(a, lo, hi) }

func adadeltaKernel[T Float](a *kernelArgs[T], lo, hi int) {
	lr, rho, omr, eps, wd := T(a.c[0]), T(a.c[1]), T(a.c[2]), T(a.c[3]), T(a.c[4])
	p, g, e, d := a.p[lo:hi], a.g[lo:hi], a.b[0][lo:hi], a.b[1][lo:hi]
	for i := range p {
		gi := g[i]
		if wd != 0 {
			gi += wd * p[i]
		}
		e[i] = e[i]*rho + omr*gi*gi
		std := sqrt(e[i] + eps)
		delta := sqrt(d[i]+eps) / std * gi
		d[i] = d[i]*rho + omr*delta*delta
		p[i] -= lr * delta
		g[i] = 0
	}
}

// NewRMSprop returns RMSprop (Hinton, "Neural Networks for Machine Learning", lecture 6e) as
// torch.optim.RMSprop, with its centered variant (Graves, "Generating Sequences With Recurrent Neural
// Networks") and momentum:
//
//	g ← g + wd·p;  s ← α·s + (1−α)·g²;  centered: a ← α·a + (1−α)·g, den = sqrt(s − a²) + eps, else sqrt(s) + eps
//	momentum μ > 0: b ← μ·b + g/den, p ← p − lr·b;  else p ← p − lr·g/den
//
// Hyperparameters (defaults, torch's): lr (1e-2), alpha (0.99), eps (1e-8), weight_decay (0), momentum (0),
// centered (false).
func NewRMSprop(opts ...Option) (*Optimizer, error) {
	return newOptimizer("rmsprop", []hyperSpec{
		lrSpec(1e-2), {key: "alpha", def: 0.99, check: closedUnit}, epsSpec(1e-8), wdSpec(0),
		betaSpec("momentum", 0), flagSpec("centered", false),
	}, opts)
}

type rmspropRule struct {
	alpha, eps, mu float64
	centered       bool
	bufs           []string
}

func init() {
	ruleFactories["rmsprop"] = func(c *config) (rule, error) {
		r := &rmspropRule{alpha: c.f("alpha"), eps: c.f("eps"), mu: c.f("momentum"), centered: c.b("centered")}
		r.bufs = []string{"square_avg"}
		if r.mu > 0 {
			r.bufs = append(r.bufs, "momentum_buffer")
		}
		if r.centered {
			r.bufs = append(r.bufs, "grad_avg")
		}
		return r, nil
	}
}

func (r *rmspropRule) bufferNames() []string  { return r.bufs }
func (r *rmspropRule) bufferInit(int) float64 { return 0 }
func (r *rmspropRule) coefs(st *paramState, lr, wd float64, c *coefs) {
	*c = coefs{lr, r.alpha, 1 - r.alpha, r.eps, wd, r.mu}
}
func (r *rmspropRule) run32(a *kernelArgs[float32], lo, hi int) { rmspropKernel(a, lo, hi, r) }
func (r *rmspropRule) run64(a *kernelArgs[float64], lo, hi int) { rmspropKernel(a, lo, hi, r) }

func rmspropKernel[T Float](a *kernelArgs[T], lo, hi int, r *rmspropRule) {
	lr, alpha, oma, eps, wd, mu := T(a.c[0]), T(a.c[1]), T(a.c[2]), T(a.c[3]), T(a.c[4]), T(a.c[5])
	p, g, s := a.p[lo:hi], a.g[lo:hi], a.b[0][lo:hi]
	momentum := r.mu > 0
	var buf, avg []T
	next := 1
	if momentum {
		buf = a.b[next][lo:hi]
		next++
	}
	if r.centered {
		avg = a.b[next][lo:hi]
	}
	for i := range p {
		gi := g[i]
		if wd != 0 {
			gi += wd * p[i]
		}
		s[i] = s[i]*alpha + oma*gi*gi
		var den T
		if r.centered {
			avg[i] = avg[i]*alpha + oma*gi
			den = sqrt(s[i]-avg[i]*avg[i]) + eps
		} else {
			den = sqrt(s[i]) + eps
		}
		if momentum {
			buf[i] = buf[i]*mu + gi/den
			p[i] -= lr * buf[i]
		} else {
			p[i] -= lr * (gi / den)
		}
		g[i] = 0
	}
}
