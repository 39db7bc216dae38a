//! The counter's forms refuse, as it is typed, a character the printer's code pages lack
//! (`printer::codepage::printable`), and take one they have.

mod ui_support;

use crossterm::event::KeyCode;
use frank::ui::app::{PostageField, Screen};
use frank::ui::screens::postage::{AddressPart, Party};
use ui_support::*;

#[test]
fn a_name_the_printer_cannot_print_is_refused_when_typed() {
    let mut app = signed_in();
    app.config.printer_profile = Some(frank::printer::profile::shipped("virtual").unwrap());
    ctrl(&mut app, 'n');
    assert_eq!(app.screen, Screen::Postage);
    // The sender's name is the first field.
    typ(&mut app, "José Müller");
    assert_eq!(
        app.postage
            .form
            .get(PostageField::Address(Party::Sender, AddressPart::Name))
            .unwrap()
            .shown_error(),
        None
    );
    typ(&mut app, " Łukasz");
    let e = app
        .postage
        .form
        .get(PostageField::Address(Party::Sender, AddressPart::Name))
        .unwrap()
        .shown_error()
        .unwrap();
    assert!(e.contains("Ł cannot be printed on this printer"), "{e}");
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "Zoë Ñandú 1");
    assert_eq!(
        app.postage
            .form
            .get(PostageField::Address(Party::Sender, AddressPart::Line1))
            .unwrap()
            .shown_error(),
        None
    );
}
