package solvers

import (
	"math"

	"github.com/pkg/errors"
)

// adamSpecs are the hyperparameters of the Adam family with torch.optim's defaults.
func adamSpecs(lr, wd float64) []hyperSpec {
	return []hyperSpec{
		lrSpec(lr),
		betaSpec("beta1", 0.9),
		betaSpec("beta2", 0.999),
		epsSpec(1e-8),
		wdSpec(wd),
		flagSpec("amsgrad", false),
	}
}

// NewAdam returns Adam (Kingma & Ba, "Adam: A Method for Stochastic Optimization") with torch.optim.Adam's
// semantics: coupled L2 weight decay (g ← g + wd·p), bias-corrected moments in the form
// p ← p − (lr/bc1)·m/(sqrt(v)/sqrt(bc2) + eps), and the AMSGrad option (Reddi et al., "On the Convergence
// of Adam and Beyond"), which keeps the running maximum of the raw v.
//
// Hyperparameters (defaults): lr (1e-3), beta1 (0.9), beta2 (0.999), eps (1e-8), weight_decay (0),
// amsgrad (false).
func NewAdam(opts ...Option) (*Optimizer, error) {
	return newOptimizer("adam", adamSpecs(1e-3, 0), opts)
}

// NewAdamW returns AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization") as
// torch.optim.AdamW: p ← p·(1 − lr·wd) before the Adam step, with the scheduled lr. Hyperparameters as
// NewAdam, with weight_decay defaulting to 1e-2.
func NewAdamW(opts ...Option) (*Optimizer, error) {
	return newOptimizer("adamw", adamSpecs(1e-3, 1e-2), opts)
}

type adamRule struct {
	beta1, beta2, eps float64
	amsgrad           bool
	decoupled         bool
}

func init() {
	for _, kind := range []string{"adam", "adamw"} {
		decoupled := kind == "adamw"
		ruleFactories[kind] = func(c *config) (rule, error) {
			return &adamRule{beta1: c.f("beta1"), beta2: c.f("beta2"), eps: c.f("eps"), amsgrad: c.b("amsgrad"), decoupled: decoupled}, nil
		}
	}
}

func (r *adamRule) bufferNames() []string {
	if r.amsgrad {
		return []string{"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
	}
	return []string{"exp_avg", "exp_avg_sq"}
}

func (r *adamRule) bufferInit(int) float64 { return 0 }

func (r *adamRule) coefs(st *paramState, lr, wd float64, c *coefs) {
	t := float64(st.step)
	bc1 := 1 - math.Pow(r.beta1, t)
	bc2 := 1 - math.Pow(r.beta2, t)
	l2, shrink := wd, 1.0
	if r.decoupled {
		l2, shrink = 0, 1-lr*wd
	}
	*c = coefs{lr / bc1, math.Sqrt(bc2), r.beta1, 1 - r.beta1, r.beta2, 1 - r.beta2, r.eps, l2, shrink}
}

func (r *adamRule) run32(a *kernelArgs[float32], lo, hi int) { adamKernel(a, lo, hi, r.amsgrad) }
func (r *adamRule) run64(a *kernelArgs[float64], lo, hi int) { adamKernel(a, lo, hi, r.amsgrad) }

func adamKernel[T Float](a *kernelArgs[T], lo, hi int, amsgrad bool) {
	// sqrt(v)/sqrt(bc2) is computed as sqrt(v)·(1/sqrt(bc2)): one division per element instead of two,
	// within an ulp of torch's order.
	step, ibc2s := T(a.c[0]), T(1/a.c[1])
	b1, omb1, b2, omb2, eps := T(a.c[2]), T(a.c[3]), T(a.c[4]), T(a.c[5]), T(a.c[6])
	l2, shrink := T(a.c[7]), T(a.c[8])
	p := a.p[lo:hi]
	n := len(p)
	g, m, v := a.g[lo:hi][:n], a.b[0][lo:hi][:n], a.b[1][lo:hi][:n]
	if amsgrad {
		vmax := a.b[2][lo:hi][:n]
		for i := range p {
			gi, pi := g[i], p[i]
			if l2 != 0 {
				gi += l2 * pi
			}
			pi *= shrink
			mi := m[i]*b1 + omb1*gi
			vi := v[i]*b2 + omb2*gi*gi
			m[i], v[i] = mi, vi
			vi = max(vmax[i], vi)
			vmax[i] = vi
			p[i] = pi - step*(mi/(sqrt(vi)*ibc2s+eps))
			g[i] = 0
		}
		return
	}
	for i := range p {
		gi, pi := g[i], p[i]
		if l2 != 0 {
			gi += l2 * pi
		}
		pi *= shrink
		mi := m[i]*b1 + omb1*gi
		vi := v[i]*b2 + omb2*gi*gi
		m[i], v[i] = mi, vi
		p[i] = pi - step*(mi/(sqrt(vi)*ibc2s+eps))
		g[i] = 0
	}
}

// sqrt is math.Sqrt for either float type; for float32 the float64 root rounds to the correctly rounded
// float32 root.
func sqrt[T Float](x T) T { return T(math.Sqrt(float64(x))) }

// NewAdamax returns AdaMax, the infinity-norm variant of Adam (Kingma & Ba, section 7.1), as
// torch.optim.Adamax: g ← g + wd·p; m ← β1·m + (1−β1)·g; u ← max(β2·u, |g| + eps);
// p ← p − (lr/bc1)·m/u. Hyperparameters (defaults): lr (2e-3), beta1 (0.9), beta2 (0.999), eps (1e-8),
// weight_decay (0).
func NewAdamax(opts ...Option) (*Optimizer, error) {
	return newOptimizer("adamax", []hyperSpec{
		lrSpec(2e-3), betaSpec("beta1", 0.9), betaSpec("beta2", 0.999), epsSpec(1e-8), wdSpec(0),
	}, opts)
}

type adamaxRule struct{ beta1, beta2, eps float64 }

func init() {
	ruleFactories["adamax"] = func(c *config) (rule, error) {
		return &adamaxRule{beta1: c.f("beta1"), beta2: c.f("beta2"), eps: c.f("eps")}, nil
	}
}

func (r *adamaxRule) bufferNames() []string  { return []string{"exp_avg", "exp_inf"} }
func (r *adamaxRule) bufferInit(int) float64 { return 0 }
func (r *adamaxRule) coefs(st *paramState, lr, wd float64, c *coefs) {
	bc1 := 1 - math.Pow(r.beta1, float64(st.step))
	*c = coefs{lr / bc1, r.beta1, 1 - r.beta1, r.beta2, r.eps, wd}
}
func (r *adamaxRule) run32(a *kernelArgs[float32], lo, hi int) { adamaxKernel(a, lo, hi) }
func (r *adamaxRule) run64(a *kernelArgs[float64], lo, hi int) { adamaxKernel(a, lo, hi) }

func adamaxKernel[T Float](a *kernelArgs[T], lo, hi int) {
	clr, b1, omb1, b2, eps, wd := T(a.c[0]), T(a.c[1]), T(a.c[2]), T(a.c[3]), T(a.c[4]), T(a.c[5])
	p, g, m, u := a.p[lo:hi], a.g[lo:hi], a.b[0][lo:hi], a.b[1][lo:hi]
	for i := range p {
		gi := g[i]
		if wd != 0 {
			gi += wd * p[i]
		}
		m[i] = m[i]*b1 + omb1*gi
		u[i] = max(u[i]*b2, abs(gi)+eps)
		p[i] -= clr * (m[i] / u[i])
		g[i] = 0
	}
}

func abs[T Float](x T) T {
	if x < 0 {
		return -x
	}
	return x
}

// NewNAdam returns NAdam (Dozat, "Incorporating Nesterov Momentum into Adam") as torch.optim.NAdam in
// torch ≥ 2.0 (the torch 1.13 single-tensor path multiplies in an extra μ_t, fixed in pytorch#92699):
// with μ_t = β1·(1 − 0.5·0.96^(t·ψ)) and Π_t = Π_{t−1}·μ_t,
//
//	p ← p − lr·(1 − μ_t)/(1 − Π_t)·g/den − lr·μ_{t+1}/(1 − Π_t·μ_{t+1})·m/den,  den = sqrt(v)/sqrt(bc2) + eps.
//
// Hyperparameters (defaults): lr (2e-3), beta1 (0.9), beta2 (0.999), eps (1e-8), weight_decay (0, coupled),
// momentum_decay ψ (4e-3).
func NewNAdam(opts ...Option) (*Optimizer, error) {
	return newOptimizer("nadam", []hyperSpec{
		lrSpec(2e-3), betaSpec("beta1", 0.9), betaSpec("beta2", 0.999), epsSpec(1e-8), wdSpec(0),
		{key: "momentum_decay", def: 4e-3, check: nonNegative},
	}, opts)
}

type nadamRule struct{ beta1, beta2, eps, psi float64 }

func init() {
	ruleFactories["nadam"] = func(c *config) (rule, error) {
		return &nadamRule{beta1: c.f("beta1"), beta2: c.f("beta2"), eps: c.f("eps"), psi: c.f("momentum_decay")}, nil
	}
}

func (r *nadamRule) bufferNames() []string  { return []string{"exp_avg", "exp_avg_sq"} }
func (r *nadamRule) bufferInit(int) float64 { return 0 }
func (r *nadamRule) coefs(st *paramState, lr, wd float64, c *coefs) {
	if len(st.scal) == 0 {
		st.scal = []float64{1} // mu_product
	}
	t := float64(st.step)
	mu := r.beta1 * (1 - 0.5*math.Pow(0.96, t*r.psi))
	muNext := r.beta1 * (1 - 0.5*math.Pow(0.96, (t+1)*r.psi))
	prod := st.scal[0] * mu
	if st.dtype.Type.Size() == 4 {
		// torch keeps mu_product as a tensor of the default dtype: float32 for float32 runs.
		prod = float64(float32(prod))
	}
	st.scal[0] = prod
	bc2 := 1 - math.Pow(r.beta2, t)
	*c = coefs{lr * (1 - mu) / (1 - prod), lr * muNext / (1 - prod*muNext), math.Sqrt(bc2),
		r.beta1, 1 - r.beta1, r.beta2, 1 - r.beta2, r.eps, wd}
}
func (r *nadamRule) run32(a *kernelArgs[float32], lo, hi int) { nadamKernel(a, lo, hi) }
func (r *nadamRule) run64(a *kernelArgs[float64], lo, hi int) { nadamKernel(a, lo, hi) }

func nadamKernel[T Float](a *kernelArgs[T], lo, hi int) {
	sg, sm, bc2s := T(a.c[0]), T(a.c[1]), T(a.c[2])
	b1, omb1, b2, omb2, eps, wd := T(a.c[3]), T(a.c[4]), T(a.c[5]), T(a.c[6]), T(a.c[7]), T(a.c[8])
	p, g, m, v := a.p[lo:hi], a.g[lo:hi], a.b[0][lo:hi], a.b[1][lo:hi]
	for i := range p {
		gi := g[i]
		if wd != 0 {
			gi += wd * p[i]
		}
		m[i] = m[i]*b1 + omb1*gi
		v[i] = v[i]*b2 + omb2*gi*gi
		den := sqrt(v[i])/bc2s + eps
		pi := p[i] - sg*(gi/den)
		p[i] = pi - sm*(m[i]/den)
		g[i] = 0
	}
}

// NewRAdam returns RAdam (Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond") as
// torch.optim.RAdam 1.13: coupled L2 decay; with ρ∞ = 2/(1−β2) − 1 and ρ_t = ρ∞ − 2t·β2^t/bc2, if ρ_t > 5
// p ← p − lr·(m/bc1)·r_t·sqrt(bc2)/(sqrt(v) + eps) with the rectifier
// r_t = sqrt((ρ_t−4)(ρ_t−2)ρ∞/((ρ∞−4)(ρ∞−2)ρ_t)), else p ← p − lr·m/bc1 (eps on the un-corrected sqrt(v)).
// Hyperparameters (defaults): lr (1e-3), beta1 (0.9), beta2 (0.999), eps (1e-8), weight_decay (0).
func NewRAdam(opts ...Option) (*Optimizer, error) {
	return newOptimizer("radam", []hyperSpec{
		lrSpec(1e-3), betaSpec("beta1", 0.9), betaSpec("beta2", 0.999), epsSpec(1e-8), wdSpec(0),
	}, opts)
}

type radamRule struct{ beta1, beta2, eps float64 }

func init() {
	ruleFactories["radam"] = func(c *config) (rule, error) {
		return &radamRule{beta1: c.f("beta1"), beta2: c.f("beta2"), eps: c.f("eps")}, nil
	}
}

func (r *radamRule) bufferNames() []string  { return []string{"exp_avg", "exp_avg_sq"} }
func (r *radamRule) bufferInit(int) float64 { return 0 }
func (r *radamRule) coefs(st *paramState, lr, wd float64, c *coefs) {
	t := float64(st.step)
	bc1 := 1 - math.Pow(r.beta1, t)
	bc2 := 1 - math.Pow(r.beta2, t)
	rhoInf := 2/(1-r.beta2) - 1
	rhoT := rhoInf - 2*t*math.Pow(r.beta2, t)/bc2
	rect := 0.0
	if rhoT > 5 {
		rect = math.Sqrt((rhoT - 4) * (rhoT - 2) * rhoInf / ((rhoInf - 4) * (rhoInf - 2) * rhoT))
	}
	*c = coefs{lr, bc1, math.Sqrt(bc2), rect, r.beta1, 1 - r.beta1, r.beta2, 1 - r.beta2, r.eps, wd}
}
func (r *radamRule) run32(a *kernelArgs[float32], lo, hi int) { radamKernel(a, lo, hi) }
func (r *radamRule) run64(a *kernelArgs[float64], lo, hi int) { radamKernel(a, lo, hi) }

func radamKernel[T Float](a *kernelArgs[T], lo, hi int) {
	lr, bc1, bc2s, rect := T(a.c[0]), T(a.c[1]), T(a.c[2]), T(a.c[3])
	b1, omb1, b2, omb2, eps, wd := T(a.c[4]), T(a.c[5]), T(a.c[6]), T(a.c[7]), T(a.c[8]), T(a.c[9])
	rectify := a.c[3] != 0
	p, g, m, v := a.p[lo:hi], a.g[lo:hi], a.b[0][lo:hi], a.b[1][lo:hi]
	for i := range p {
		gi := g[i]
		if wd != 0 {
			gi += wd * p[i]
		}
		m[i] = m[i]*b1 + omb1*gi
		v[i] = v[i]*b2 + omb2*gi*gi
		mh := m[i] / bc1
		if rectify {
			adaptive := bc2s / (sqrt(v[i]) + eps)
			p[i] -= mh * lr * adaptive * rect
		} else {
			p[i] -= mh * lr
		}
		g[i] = 0
	}
}

// checkState rejects a loaded NAdam state without its running product μ-product.
func (r *nadamRule) checkState(st *paramState) error {
	if st.step > 0 && len(st.scal) != 1 {
		return errors.Errorf("nadam: parameter %q lacks its mu_product", st.name)
	}
	return nil
}
