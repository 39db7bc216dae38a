//! Ticket, check, coupon and gift-certificate forms (same layout, fields per kind).

use super::framed;
use crate::indicium::ItemKind;
use crate::ui::App;
use crate::ui::panels::form;
use ratatui::Frame;
use ratatui::layout::Rect;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, kind: ItemKind) {
    let title = match kind {
        ItemKind::Ticket => "Ticket",
        ItemKind::Check => "Check",
        ItemKind::Coupon => "Coupon",
        _ => "Gift certificate",
    };
    let inner = framed(frame, area, app, title);
    let idx: Vec<usize> = (0..app.item_form.fields.len()).collect();
    form::draw(frame, inner, &app.item_form, &idx, &app.config.theme, true);
}
