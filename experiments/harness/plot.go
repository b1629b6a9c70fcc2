package harness

import (
	"image/color"
	"math"
	"os"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// palette20 is a set of distinguishable colours (Tableau 10 then a darker set).
var palette20 = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
	{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255},
	{188, 189, 34, 255}, {23, 190, 207, 255}, {0, 0, 128, 255}, {128, 0, 0, 255},
	{0, 100, 0, 255}, {255, 0, 255, 255}, {0, 128, 128, 255}, {128, 128, 0, 255},
	{70, 70, 70, 255}, {255, 69, 0, 255}, {75, 0, 130, 255}, {139, 69, 19, 255},
}

// Color returns the i-th series colour.
func Color(i int) color.Color { return palette20[((i%len(palette20))+len(palette20))%len(palette20)] }

var dashes = [][]vg.Length{nil, {vg.Points(5), vg.Points(2)}, {vg.Points(1), vg.Points(2)}, {vg.Points(6), vg.Points(2), vg.Points(1), vg.Points(2)}}

var glyphs = []draw.GlyphDrawer{
	draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}, draw.CrossGlyph{}, draw.PlusGlyph{},
	draw.RingGlyph{}, draw.BoxGlyph{}, draw.PyramidGlyph{},
}

// Series is one curve or set of points on a plot.
type Series struct {
	// Name is the legend entry ("" for none).
	Name string
	// X and Y are the coordinates.
	X, Y []float64
	// Style is the index into the colour, dash and glyph cycles.
	Style int
	// Points draws markers at the points; Line draws the connecting line. Neither means Line.
	Points, Line bool
	// Black draws the series in black (for reference curves).
	Black bool
}

// LinePlot is a plot of curves and points on linear or logarithmic axes.
type LinePlot struct {
	Title, XLabel, YLabel string
	// LogY uses a logarithmic y axis; values <= 0 are clamped to the smallest positive value.
	LogY bool
	// XRange and YRange fix the axes when their two values differ.
	XRange, YRange [2]float64
	Series         []Series
	// Width and Height in inches (default 8 × 5).
	Width, Height float64
}

// SavePlot writes lp as a PNG to name in the experiment's directory.
func (c *Context) SavePlot(name string, lp LinePlot) error {
	return saveLinePlot(c.Path(name), lp, nil)
}

func newPlot(title, xl, yl string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xl
	p.Y.Label.Text = yl
	p.Add(plotter.NewGrid())
	return p
}

// saveLinePlot draws lp (after extra, which may add plotters underneath the series) as a PNG with the
// legend to the right of the plot area, outside the data.
func saveLinePlot(path string, lp LinePlot, extra func(p *plot.Plot)) error {
	p := newPlot(lp.Title, lp.XLabel, lp.YLabel)
	if extra != nil {
		extra(p)
	}
	floor := math.Inf(1)
	if lp.LogY {
		for _, s := range lp.Series {
			for _, y := range s.Y {
				if y > 0 && y < floor {
					floor = y
				}
			}
		}
		if math.IsInf(floor, 1) {
			floor = 1e-300
		}
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: 1}
	}
	leg := plot.NewLegend()
	leg.Top = true
	leg.TextStyle.Font.Size = vg.Points(9)
	n, err := addSeries(p, &leg, lp.Series, func(y float64) float64 {
		if lp.LogY && !(y > 0) {
			return floor
		}
		return y
	})
	if err != nil {
		return err
	}
	if lp.XRange[0] != lp.XRange[1] {
		p.X.Min, p.X.Max = lp.XRange[0], lp.XRange[1]
	}
	if lp.YRange[0] != lp.YRange[1] {
		p.Y.Min, p.Y.Max = lp.YRange[0], lp.YRange[1]
	}
	w, h := lp.Width, lp.Height
	if w == 0 {
		w = 8
	}
	if h == 0 {
		h = 5
	}
	var legW vg.Length
	if n > 0 {
		r := leg.Rectangle(draw.Canvas{})
		legW = r.Max.X - r.Min.X + vg.Points(14)
	}
	W, H := vg.Length(w)*vg.Inch+legW, vg.Length(h)*vg.Inch
	img := vgimg.New(W, H)
	dc := draw.New(img)
	p.Draw(draw.Crop(dc, 0, -legW, 0, 0))
	if n > 0 {
		leg.Draw(draw.Crop(dc, W-legW, -vg.Points(6), 0, -vg.Points(28)))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// addSeries adds the series to p and their entries to leg; it returns the number of legend entries.
func addSeries(p *plot.Plot, leg *plot.Legend, ss []Series, fy func(float64) float64) (int, error) {
	n := 0
	for _, s := range ss {
		xys := make(plotter.XYs, 0, len(s.X))
		for i := range s.X {
			y := fy(s.Y[i])
			if math.IsNaN(s.X[i]) || math.IsNaN(y) || math.IsInf(s.X[i], 0) || math.IsInf(y, 0) {
				continue
			}
			xys = append(xys, plotter.XY{X: s.X[i], Y: y})
		}
		if len(xys) == 0 {
			continue
		}
		col := Color(s.Style)
		if s.Black {
			col = color.Black
		}
		var thumbs []plot.Thumbnailer
		if s.Line || !s.Points {
			l, err := plotter.NewLine(xys)
			if err != nil {
				return n, err
			}
			l.Color = col
			l.Width = vg.Points(1.2)
			if !s.Black {
				l.Dashes = dashes[(s.Style/10)%len(dashes)]
			}
			p.Add(l)
			thumbs = append(thumbs, l)
		}
		if s.Points {
			sc, err := plotter.NewScatter(xys)
			if err != nil {
				return n, err
			}
			sc.GlyphStyle.Color = col
			sc.GlyphStyle.Shape = glyphs[s.Style%len(glyphs)]
			sc.GlyphStyle.Radius = vg.Points(3)
			p.Add(sc)
			thumbs = append(thumbs, sc)
		}
		if s.Name != "" {
			leg.Add(s.Name, thumbs...)
			n++
		}
	}
	return n, nil
}

// ContourPlot is a 2-D function drawn as contour lines, with trajectories and marked points on top.
type ContourPlot struct {
	Title string
	// F is the function drawn; the grid is N × N over [XMin, XMax] × [YMin, YMax] (N defaults to 120).
	F                      func(x, y float64) float64
	XMin, XMax, YMin, YMax float64
	N                      int
	// Levels are the contour heights; nil means 14 quantiles of the grid values.
	Levels []float64
	// Series are drawn over the contours (trajectories as lines with points, minima as points).
	Series []Series
}

type grid struct {
	xs, ys []float64
	z      [][]float64 // z[r][c]
}

// Dims, Z, X and Y implement plotter.GridXYZ.
func (g *grid) Dims() (c, r int) { return len(g.xs), len(g.ys) }

// Z returns the value at column c, row r.
func (g *grid) Z(c, r int) float64 { return g.z[r][c] }

// X returns the x coordinate of column c.
func (g *grid) X(c int) float64 { return g.xs[c] }

// Y returns the y coordinate of row r.
func (g *grid) Y(r int) float64 { return g.ys[r] }

type grays int

// Colors implements palette.Palette: n shades from light to mid grey.
func (n grays) Colors() []color.Color {
	out := make([]color.Color, int(n))
	for i := range out {
		v := uint8(200 - 140*i/max(1, int(n)-1))
		out[i] = color.Gray{Y: v}
	}
	return out
}

// SaveContour writes cp as a PNG to name in the experiment's directory.
func (c *Context) SaveContour(name string, cp ContourPlot) error {
	n := cp.N
	if n == 0 {
		n = 120
	}
	g := &grid{xs: make([]float64, n), ys: make([]float64, n), z: make([][]float64, n)}
	var all []float64
	for i := 0; i < n; i++ {
		g.xs[i] = cp.XMin + (cp.XMax-cp.XMin)*float64(i)/float64(n-1)
		g.ys[i] = cp.YMin + (cp.YMax-cp.YMin)*float64(i)/float64(n-1)
	}
	for r := 0; r < n; r++ {
		g.z[r] = make([]float64, n)
		for cc := 0; cc < n; cc++ {
			v := cp.F(g.xs[cc], g.ys[r])
			g.z[r][cc] = v
			all = append(all, v)
		}
	}
	levels := cp.Levels
	if levels == nil {
		sort.Float64s(all)
		const k = 14
		for i := 1; i <= k; i++ {
			// Quantiles concentrated towards the low values, where the minima are.
			q := math.Pow(float64(i)/float64(k+1), 2)
			j := int(q * float64(len(all)-1))
			// Midway to the next distinct value, so that no level passes exactly through grid points.
			l := all[j]
			for jj := j + 1; jj < len(all); jj++ {
				if all[jj] > l {
					l = (l + all[jj]) / 2
					break
				}
			}
			if len(levels) == 0 || l > levels[len(levels)-1] {
				levels = append(levels, l)
			}
		}
	}
	lp := LinePlot{Title: cp.Title, XLabel: "x", YLabel: "y", Series: cp.Series,
		XRange: [2]float64{cp.XMin, cp.XMax}, YRange: [2]float64{cp.YMin, cp.YMax}, Width: 7, Height: 6}
	return saveLinePlot(c.Path(name), lp, func(p *plot.Plot) {
		p.Add(&contourLines{g: g, levels: levels, colors: grays(len(levels)).Colors()})
	})
}

// contourLines draws contour lines by marching squares. (gonum/plot's Contour tracer can loop forever on
// piecewise-linear functions such as |x+y| + |x−y|/10, so the harness draws its own segments.)
type contourLines struct {
	g      *grid
	levels []float64
	colors []color.Color
}

// Plot implements plot.Plotter.
func (cl *contourLines) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	g := cl.g
	nc, nr := g.Dims()
	for li, L := range cl.levels {
		sty := draw.LineStyle{Color: cl.colors[li%len(cl.colors)], Width: vg.Points(0.6)}
		for r := 0; r+1 < nr; r++ {
			for cc := 0; cc+1 < nc; cc++ {
				// Corners in order around the cell: (c,r), (c+1,r), (c+1,r+1), (c,r+1).
				xs := [4]float64{g.X(cc), g.X(cc + 1), g.X(cc + 1), g.X(cc)}
				ys := [4]float64{g.Y(r), g.Y(r), g.Y(r + 1), g.Y(r + 1)}
				zs := [4]float64{g.Z(cc, r), g.Z(cc+1, r), g.Z(cc+1, r+1), g.Z(cc, r+1)}
				var pts []vg.Point
				for e := 0; e < 4; e++ {
					a, b := e, (e+1)%4
					if (zs[a] >= L) == (zs[b] >= L) || math.IsNaN(zs[a]) || math.IsNaN(zs[b]) {
						continue
					}
					t := (L - zs[a]) / (zs[b] - zs[a])
					x := xs[a] + t*(xs[b]-xs[a])
					y := ys[a] + t*(ys[b]-ys[a])
					pts = append(pts, vg.Point{X: trX(x), Y: trY(y)})
				}
				for k := 0; k+1 < len(pts); k += 2 {
					c.StrokeLines(sty, c.ClipLinesXY([]vg.Point{pts[k], pts[k+1]})...)
				}
			}
		}
	}
}

// DataRange implements plot.DataRanger.
func (cl *contourLines) DataRange() (xmin, xmax, ymin, ymax float64) {
	nc, nr := cl.g.Dims()
	return cl.g.X(0), cl.g.X(nc - 1), cl.g.Y(0), cl.g.Y(nr - 1)
}
