//! The activity chart: one bar per day, drawn on the server as SVG (no script, no inline
//! style: the stylesheet colours the bars by class). Only geometry is computed here; the
//! template writes the markup, escaping as it does everywhere.

use licensing::v1::ActivityDay;

/// The drawing's size in SVG user units; the stylesheet scales it to the page.
pub const WIDTH: u32 = 600;
pub const HEIGHT: u32 = 200;
/// Room under the bars for the day labels, and above them for the scale.
const BOTTOM: u32 = 20;
const TOP: u32 = 16;
/// The gap between two bars, in user units.
const GAP: u32 = 2;

/// One bar, and the numbers it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub day: String,
    pub heartbeats: i64,
    pub active_users: i64,
}

/// A label along the bottom axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub x: u32,
    pub text: String,
    /// Which end of the text sits at `x`: `start`, `middle` or `end` (a class of the stylesheet).
    pub anchor: &'static str,
}

/// The whole chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    pub bars: Vec<Bar>,
    pub labels: Vec<Label>,
    /// The largest day's heartbeats: the top of the scale.
    pub max: i64,
    pub width: u32,
    pub height: u32,
    /// Where the bars stand.
    pub baseline: u32,
    /// Where the axis labels sit.
    pub label_y: u32,
}

/// Lays the days out left (oldest) to right, each bar's height proportional to its heartbeats.
/// A day without heartbeats still gets a bar one unit high, so every day can be pointed at.
pub fn chart(days: &[ActivityDay]) -> Chart {
    let count = u32::try_from(days.len().max(1)).unwrap_or(u32::MAX);
    let slot = (WIDTH / count).max(1);
    let width = slot.saturating_sub(GAP).max(1);
    let baseline = HEIGHT - BOTTOM;
    let room = u64::from(baseline - TOP);
    let max = days.iter().map(|d| d.heartbeats.max(0)).max().unwrap_or(0);
    let bars: Vec<Bar> = days
        .iter()
        .zip(0u32..)
        .map(|(day, index)| {
            let value = u64::try_from(day.heartbeats.max(0)).unwrap_or(0);
            let scaled = match u64::try_from(max) {
                Ok(top) if top > 0 => (value * room).div_ceil(top),
                _ => 0,
            };
            let height = u32::try_from(scaled.max(1)).unwrap_or(1);
            Bar {
                x: index * slot + GAP / 2,
                y: baseline - height,
                width,
                height,
                day: day.day.clone(),
                heartbeats: day.heartbeats,
                active_users: day.active_users,
            }
        })
        .collect();
    // The first and last day, and one in the middle: enough to read the dates off.
    let mut labels = Vec::new();
    if let (Some(first), Some(last)) = (bars.first(), bars.last()) {
        labels.push(Label { x: first.x, text: first.day.clone(), anchor: "start" });
        if bars.len() > 2 {
            let middle = &bars[bars.len() / 2];
            labels.push(Label { x: middle.x + middle.width / 2, text: middle.day.clone(), anchor: "middle" });
        }
        if bars.len() > 1 {
            labels.push(Label { x: last.x + last.width, text: last.day.clone(), anchor: "end" });
        }
    }
    Chart { bars, labels, max, width: WIDTH, height: HEIGHT, baseline, label_y: HEIGHT - 4 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: u32, heartbeats: i64) -> ActivityDay {
        ActivityDay { day: format!("2026-11-{n:02}"), heartbeats, active_users: heartbeats / 2 }
    }

    #[test]
    fn thirty_days_fit_and_scale_to_the_busiest() {
        let days: Vec<_> = (1..=30).map(|n| day(n, if n == 30 { 40 } else { i64::from(n % 3) })).collect();
        let chart = chart(&days);
        assert_eq!(chart.bars.len(), 30);
        assert_eq!(chart.max, 40);
        let last = chart.bars.last().unwrap();
        assert_eq!(last.y, TOP, "the busiest day reaches the top");
        assert!(last.x + last.width <= WIDTH);
        assert!(chart.bars.iter().all(|b| b.height >= 1 && b.y + b.height == chart.baseline));
        assert!(chart.bars.windows(2).all(|w| w[0].x + w[0].width < w[1].x), "bars do not touch");
        assert_eq!(chart.bars[2].heartbeats, 0);
        assert_eq!(chart.bars[2].height, 1, "an empty day is still a visible sliver");
        assert_eq!(chart.labels.len(), 3);
    }

    #[test]
    fn quiet_or_empty_histories_draw() {
        let chart = chart(&[day(1, 0), day(2, 0)]);
        assert_eq!(chart.max, 0);
        assert!(chart.bars.iter().all(|b| b.height == 1));
        assert!(super::chart(&[]).bars.is_empty());
    }
}
