package solvers

import "math"

// NewDiffGrad returns diffGrad (Dubey et al., "diffGrad: An Optimization Method for Convolutional Neural
// Networks"), the corrected version of the authors' code (shivram1987/diffGrad, diffGrad_v2.py):
//
//	g ← g + wd·p (L2);  m, v as Adam;  ξ = 1/(1 + exp(−|g_prev − g|)) (friction, g_prev = 0 at t = 1)
//	g_prev ← g;  p ← p − lr·sqrt(bc2)/bc1·(m ⊙ ξ)/(sqrt(v) + eps)
//
// Hyperparameters (defaults): lr (1e-3), beta1 (0.9), beta2 (0.999), eps (1e-8), weight_decay (0).
func NewDiffGrad(opts ...Option) (*Optimizer, error) {
	return newOptimizer("diffgrad", diffGradSpecs(), opts)
}

// NewDiffGradPaper returns diffGrad as the paper's original code (diffGrad.py) behaves: it stores the
// previous gradient as a reference to the gradient tensor, not a copy, so when gradients are written in
// place (Gorgonia, and torch's zero_grad + backward) g_prev is the current gradient from step 2 on and the
// friction coefficient is stuck at ξ = sigmoid(0) = 0.5: after the first step the method is Adam (form b)
// at half the learning rate. Kept to reproduce the paper's numbers; use NewDiffGrad otherwise.
func NewDiffGradPaper(opts ...Option) (*Optimizer, error) {
	return newOptimizer("diffgrad_paper", diffGradSpecs(), opts)
}

func diffGradSpecs() []hyperSpec {
	return []hyperSpec{lrSpec(1e-3), betaSpec("beta1", 0.9), betaSpec("beta2", 0.999), epsSpec(1e-8), wdSpec(0)}
}

type diffGradRule struct {
	beta1, beta2, eps float64
	paper             bool
}

func init() {
	for _, kind := range []string{"diffgrad", "diffgrad_paper"} {
		paper := kind == "diffgrad_paper"
		ruleFactories[kind] = func(c *config) (rule, error) {
			return &diffGradRule{beta1: c.f("beta1"), beta2: c.f("beta2"), eps: c.f("eps"), paper: paper}, nil
		}
	}
	registerOptimizer("diffgrad", NewDiffGrad)
	registerOptimizer("diffgrad_paper", NewDiffGradPaper)
}

func (r *diffGradRule) bufferNames() []string {
	if r.paper {
		return []string{"exp_avg", "exp_avg_sq"}
	}
	return []string{"exp_avg", "exp_avg_sq", "previous_grad"}
}
func (r *diffGradRule) bufferInit(int) float64 { return 0 }
func (r *diffGradRule) coefs(st *paramState, lr, wd float64, c *coefs) {
	t := float64(st.step)
	bc1, bc2 := 1-math.Pow(r.beta1, t), 1-math.Pow(r.beta2, t)
	first := 0.0
	if st.step == 1 {
		first = 1
	}
	*c = coefs{lr * math.Sqrt(bc2) / bc1, r.beta1, 1 - r.beta1, r.beta2, 1 - r.beta2, r.eps, wd, first}
}
func (r *diffGradRule) run32(a *kernelArgs[float32], lo, hi int) { diffGradKernel(a, lo, hi, r.paper) }
func (r *diffGradRule) run64(a *kernelArgs[float64], lo, hi int) { diffGradKernel(a, lo, hi, r.paper) }

func diffGradKernel[T Float](a *kernelArgs[T], lo, hi int, paper bool) {
	step, b1, omb1, b2, omb2, eps, wd := T(a.c[0]), T(a.c[1]), T(a.c[2]), T(a.c[3]), T(a.c[4]), T(a.c[5]), T(a.c[6])
	first := a.c[7] != 0
	p, g, m, v := a.p[lo:hi], a.g[lo:hi], a.b[0][lo:hi], a.b[1][lo:hi]
	var prev []T
	if !paper {
		prev = a.b[2][lo:hi]
	}
	for i := range p {
		gi := g[i]
		if wd != 0 {
			gi += wd * p[i]
		}
		m[i] = m[i]*b1 + omb1*gi
		v[i] = v[i]*b2 + omb2*gi*gi
		den := sqrt(v[i]) + eps
		var xi T
		switch {
		case !paper:
			xi = sigmoidAbs(prev[i] - gi)
			prev[i] = gi
		case first:
			xi = sigmoidAbs(gi)
		default:
			xi = 0.5
		}
		p[i] -= step * (m[i] * xi / den)
		g[i] = 0
	}
}

// sigmoidAbs returns 1/(1 + exp(−|x|)).
func sigmoidAbs[T Float](x T) T {
	return T(1 / (1 + math.Exp(-math.Abs(float64(x)))))
}
