package solvers

import "github.com/pkg/errors"

// NewSGD returns stochastic gradient descent (Robbins & Monro, "A Stochastic Approximation Method") with
// optional heavy-ball momentum (Polyak, "Some methods of speeding up the convergence of iteration
// methods"), dampening and Nesterov momentum (Sutskever et al., "On the importance of initialization and
// momentum in deep learning"), exactly as torch.optim.SGD:
//
//	g ← g + wd·p                       (coupled L2 weight decay)
//	b ← g at the first step, then b ← μ·b + (1 − dampening)·g
//	g ← g + μ·b if nesterov else b
//	p ← p − lr·g
//
// Hyperparameters (defaults): lr (0.01; torch has none), momentum (0), dampening (0), nesterov (false),
// weight_decay (0). Nesterov needs momentum > 0 and zero dampening, as in torch.
func NewSGD(opts ...Option) (*Optimizer, error) {
	return newOptimizer("sgd", []hyperSpec{
		lrSpec(0.01),
		betaSpec("momentum", 0),
		{key: "dampening", def: 0, check: closedUnit},
		flagSpec("nesterov", false),
		wdSpec(0),
	}, opts)
}

type sgdRule struct {
	momentum bool
	nesterov bool
	mu, damp float64
}

func init() {
	ruleFactories["sgd"] = func(c *config) (rule, error) {
		r := &sgdRule{mu: c.f("momentum"), damp: c.f("dampening"), nesterov: c.b("nesterov")}
		r.momentum = r.mu != 0
		if r.nesterov && (r.mu <= 0 || r.damp != 0) {
			return nil, errors.New("nesterov momentum requires momentum > 0 and zero dampening")
		}
		return r, nil
	}
}

func (r *sgdRule) bufferNames() []string {
	if r.momentum {
		return []string{"momentum_buffer"}
	}
	return nil
}

func (r *sgdRule) bufferInit(int) float64 { return 0 }

func (r *sgdRule) coefs(st *paramState, lr, wd float64, c *coefs) {
	first := 0.0
	if st.step == 1 {
		first = 1
	}
	*c = coefs{lr, wd, r.mu, 1 - r.damp, first}
}

func (r *sgdRule) run32(a *kernelArgs[float32], lo, hi int) { sgdKernel(a, lo, hi, r) }
func (r *sgdRule) run64(a *kernelArgs[float64], lo, hi int) { sgdKernel(a, lo, hi, r) }

func sgdKernel[T Float](a *kernelArgs[T], lo, hi int, r *sgdRule) {
	lr, wd, mu, damp1 := T(a.c[0]), T(a.c[1]), T(a.c[2]), T(a.c[3])
	first := a.c[4] != 0
	p, g := a.p[lo:hi], a.g[lo:hi]
	if !r.momentum {
		for i := range p {
			d := g[i]
			if wd != 0 {
				d += wd * p[i]
			}
			p[i] -= lr * d
			g[i] = 0
		}
		return
	}
	b := a.b[0][lo:hi]
	for i := range p {
		d := g[i]
		if wd != 0 {
			d += wd * p[i]
		}
		if first {
			b[i] = d
		} else {
			b[i] = b[i]*mu + damp1*d
		}
		if r.nesterov {
			d += mu * b[i]
		} else {
			d = b[i]
		}
		p[i] -= lr * d
		g[i] = 0
	}
}
