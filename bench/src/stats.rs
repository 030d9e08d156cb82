//! Samples, their summary (median, min–max) and the one table the bench prints.

use std::fmt::Write as _;

#[derive(Clone, Debug, Default)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn one(value: f64) -> Samples {
        Samples(vec![value])
    }

    pub fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    pub fn median(&self) -> Option<f64> {
        let v = self.sorted();
        if v.is_empty() {
            return None;
        }
        let mid = v.len() / 2;
        Some(if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        })
    }

    pub fn min(&self) -> Option<f64> {
        self.sorted().first().copied()
    }

    pub fn max(&self) -> Option<f64> {
        self.sorted().last().copied()
    }

    pub fn percentile(&self, p: f64) -> Option<f64> {
        let v = self.sorted();
        if v.is_empty() {
            return None;
        }
        let i = ((v.len() - 1) as f64 * p).round() as usize;
        Some(v[i])
    }
}

/// One side of a row: measured samples, or "n/a" (supervisord has no such thing).
#[derive(Clone, Debug)]
pub enum Cell {
    Measured(Samples),
    NotApplicable,
}

impl Cell {
    pub fn median(&self) -> Option<f64> {
        match self {
            Cell::Measured(s) => s.median(),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Row {
    pub figure: String,
    pub n: String,
    pub unit: &'static str,
    pub tend: Cell,
    pub supd: Cell,
    /// For latencies, memory, CPU: lower is better; for requests/s: higher.
    pub lower_is_better: bool,
}

pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_cell(cell: &Cell) -> String {
    match cell {
        Cell::Measured(s) => match (s.median(), s.min(), s.max()) {
            (Some(m), Some(lo), Some(hi)) if s.0.len() > 1 => {
                format!("{} ({}–{})", fmt_num(m), fmt_num(lo), fmt_num(hi))
            }
            (Some(m), _, _) => fmt_num(m),
            _ => "no samples".into(),
        },
        Cell::NotApplicable => "n/a".into(),
    }
}

fn fmt_ratio(row: &Row) -> String {
    match (row.tend.median(), row.supd.median()) {
        (Some(t), Some(s)) if s > 0.0 && t > 0.0 => {
            let ratio = t / s;
            let better = if row.lower_is_better {
                ratio < 1.0
            } else {
                ratio > 1.0
            };
            let factor = if ratio >= 1.0 { ratio } else { 1.0 / ratio };
            format!(
                "{} (tend {} ×{})",
                fmt_num(ratio),
                if better { "better" } else { "worse" },
                fmt_num(factor)
            )
        }
        _ => "–".into(),
    }
}

/// The table as Markdown (also what the terminal shows).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| figure | N | unit | tend median (min–max) | supervisord median (min–max) | tend ÷ supervisord |"
    );
    let _ = writeln!(out, "|---|---:|---|---|---|---|");
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            row.figure,
            row.n,
            row.unit,
            fmt_cell(&row.tend),
            fmt_cell(&row.supd),
            fmt_ratio(row)
        );
    }
    out
}
