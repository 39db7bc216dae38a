//! The backend's counter-office requests (see [`super`]): prices — the signed rate table's at
//! once, then the vendor's own quote, which authorizes (issue 17) — top-ups, the balance, the
//! history, baskets' tenders, the day's report, and a supervisor's refund decisions.

use super::*;

pub(super) fn history_state(s: &str) -> ItemState {
    match s {
        "reserved" => ItemState::Printing,
        "unsettled" => ItemState::Unsettled,
        "voided" => ItemState::Voided,
        "refund_requested" => ItemState::Refund(RefundState::Requested),
        "refunded" => ItemState::Refund(RefundState::Refunded),
        "refund_rejected" => ItemState::Refund(RefundState::Denied),
        "refund_approved" => ItemState::Refund(RefundState::Approved),
        _ => ItemState::Printed,
    }
}

pub(super) fn day_of(ms: u64) -> String {
    wire::day_of_ms(ms)
        .map(|d| d.to_string())
        .unwrap_or_default()
}

impl Actor {
    /// Asks the vendor for the balance and shows it (a refund decided at the vendor, say).
    pub(super) fn refresh_balance(&self) {
        let Some(sessions) = self.sessions() else {
            return;
        };
        let events = self.events.clone();
        tokio::spawn(async move {
            let session = sessions.borrow().clone();
            match session.balance().await {
                Ok(b) => {
                    let cents = Cents::new(b.registers.descending_cents).unwrap_or(Cents::ZERO);
                    let _ = events.send(Backend::Balance(cents)).await;
                }
                Err(e) => tracing::debug!(error = %e, "balance not refreshed"),
            }
        });
    }

    /// The rate table of the rates bundle in use (issue 17), read again (a rates bundle just
    /// taken is used from the next quote on). Said in the log either way: the counter's prices
    /// come from the signed table, or — with none received yet — from the vendor's quotes.
    pub(super) fn load_rates(&mut self) {
        let Some(b) = &self.cfg.bundles else {
            tracing::info!("no release key pinned: prices are the vendor's quotes");
            return;
        };
        self.rates = crate::counter::bundles::installed_rates(&b.store())
            .map(|(label, table)| Arc::new(SignedRates { label, table }));
        match &self.rates {
            Some(r) => tracing::info!(
                rates = %r.label,
                "prices from the signed rate table; the vendor's price authorizes"
            ),
            None => {
                tracing::info!("no signed rate table received yet: prices are the vendor's quotes")
            }
        }
    }

    /// Prices a postage piece: the signed rate table's price at once (when there is one), then
    /// the vendor's own quote — the price the authorization carries, shown in its place. A
    /// difference is logged and the clerk reads both before confirming (the review says so).
    pub(super) fn quote(
        &mut self,
        request: u64,
        class: MailClass,
        weight_oz: u16,
        from: String,
        to: String,
    ) {
        let item = wire::PostageItem {
            class: class.name().to_string(),
            weight_oz,
            zip: to,
        };
        let listed = self.rates.as_ref().and_then(|r| {
            let q = wire::QuoteRequest {
                item: item.clone(),
                origin_zip: from.clone(),
            };
            match wire::price::quote(&r.table, &q).map(|q| Cents::new(q.amount_cents)) {
                Ok(Ok(amount)) => Some((amount, r.label.clone())),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, rates = %r.label, "the signed rate table's price is out of range");
                    None
                }
                Err(e) => {
                    tracing::info!(error = %crate::logtext::escaped(&e.message), rates = %r.label, "no price in the signed rate table; the vendor's quote alone prices");
                    None
                }
            }
        });
        let sessions = self.sessions();
        let events = self.events.clone();
        tokio::spawn(async move {
            if let Some((amount, table)) = listed.clone() {
                let _ = events
                    .send(Backend::TablePrice {
                        request,
                        amount,
                        table,
                    })
                    .await;
            }
            let Some(sessions) = sessions else {
                return;
            };
            let session = sessions.borrow().clone();
            let b = match session.quote(item, &from).await {
                Ok(q) => match Cents::new(q.amount_cents) {
                    Ok(amount) => {
                        if let Some((listed, table)) = listed.filter(|(l, _)| *l != amount) {
                            tracing::warn!(
                                rates = %table,
                                table_price = %listed,
                                vendor_price = %amount,
                                "the vendor's price is not the signed rate table's; the vendor's is charged"
                            );
                        }
                        Backend::Quote { request, amount }
                    }
                    Err(e) => Backend::QuoteFailed {
                        request,
                        reason: e.to_string(),
                    },
                },
                Err(e) => Backend::QuoteFailed {
                    request,
                    reason: reason(&e),
                },
            };
            let _ = events.send(b).await;
        });
    }

    pub(super) async fn fund(&mut self, method: FundMethod, amount: Cents) {
        let Some(sessions) = self.sessions() else {
            self.emit(Backend::FundResult {
                ok: false,
                declined: false,
                message: "Not signed in.".into(),
            })
            .await;
            return;
        };
        let wire_method = match &method {
            FundMethod::Card {
                number,
                expiry,
                cvc,
            } => {
                let (m, y) = expiry.split_once('/').unwrap_or((expiry.as_str(), ""));
                let (Ok(m), Ok(y)) = (m.trim().parse::<u8>(), y.trim().parse::<u16>()) else {
                    self.emit(Backend::FundResult {
                        ok: false,
                        declined: false,
                        message: "Card expiry must be MM/YY.".into(),
                    })
                    .await;
                    return;
                };
                wire::FundMethod::Card {
                    number: number
                        .expose()
                        .chars()
                        .filter(|c| !c.is_whitespace())
                        .collect(),
                    exp_month: m,
                    exp_year: if y < 100 { 2000 + y } else { y },
                    cvc: cvc.expose().to_string(),
                }
            }
            FundMethod::Eft { routing, account } => wire::FundMethod::Ach {
                routing: routing.trim().to_string(),
                account: account.expose().trim().to_string(),
            },
        };
        drop(method);
        let request_id = crate::clock::fresh_request_id().to_bytes();
        let events = self.events.clone();
        let retry = self.cfg.authorize_retry_ms_max;
        tokio::spawn(async move {
            let r: Result<wire::Funded, Failure> = send_retrying(sessions, retry, |s| {
                s.fund_request(
                    request_id,
                    crate::clock::unix_ms(),
                    amount.get(),
                    wire_method.clone(),
                )
            })
            .await;
            let msgs = match r {
                Ok(f) => vec![
                    Backend::FundResult {
                        ok: true,
                        declined: false,
                        message: format!("Added {amount} (payment {}).", f.payment_id),
                    },
                    Backend::Balance(
                        Cents::new(f.registers.descending_cents).unwrap_or(Cents::ZERO),
                    ),
                ],
                Err(e) => vec![Backend::FundResult {
                    ok: false,
                    declined: e.declined,
                    message: format!("Not added: {}", e.words),
                }],
            };
            for m in msgs {
                let _ = events.send(m).await;
            }
        });
    }

    pub(super) fn history(&mut self) {
        let Some(sessions) = self.sessions() else {
            return;
        };
        // The clerk reads refund states here: the balance shown goes with them.
        self.refresh_balance();
        // Pieces this run issued keep the UI's job ids.
        let known: HashMap<u64, JobId> = self
            .ui
            .iter()
            .filter_map(|(j, r)| {
                self.with_book(|b| b.get(&r.key).and_then(|e| e.piece_serial))
                    .flatten()
                    .map(|s| (s, *j))
            })
            .collect();
        let events = self.events.clone();
        tokio::spawn(async move {
            let session = sessions.borrow().clone();
            match session.pieces(HISTORY_ROWS, None).await {
                Ok(list) => {
                    let items: Vec<IssuedItem> = list
                        .pieces
                        .iter()
                        .map(|p| IssuedItem {
                            number: p.number(),
                            job: known.get(&p.piece_serial).copied(),
                            kind: ItemKind::from_code(p.kind).unwrap_or(ItemKind::Postage),
                            date: day_of(p.authorized_at_ms),
                            authorized_at_ms: p.authorized_at_ms,
                            summary: if p.summary.is_empty() {
                                format!("piece {}", p.piece_serial)
                            } else {
                                p.summary.clone()
                            },
                            amount: Cents::new(p.amount_cents).unwrap_or(Cents::ZERO),
                            state: history_state(&p.item_state),
                        })
                        .collect();
                    let _ = events.send(Backend::Items(items)).await;
                }
                Err(e) => {
                    let _ = events
                        .send(Backend::Error(format!(
                            "History not loaded: {}",
                            reason(&e)
                        )))
                        .await;
                }
            }
        });
    }

    /// Words when `number` is not of this account's meter (as far as this run knows it).
    pub(super) fn own_meter(&self, number: &PieceNumber) -> Result<(), String> {
        match &self.meter {
            Some(m) if *m != number.meter => Err(format!(
                "{number} was not issued by this office's meter ({m}); nothing was sent."
            )),
            _ => Ok(()),
        }
    }

    /// Records a basket's tender at the vendor (retried with the basket's own request id).
    pub(super) async fn tender(
        &mut self,
        basket: BasketId,
        pieces: Vec<PieceNumber>,
        tender: Tender,
    ) {
        let Some(sessions) = self.sessions() else {
            self.emit(Backend::TenderFailed {
                basket,
                reason: "Not signed in; the payment was not recorded. Sign in and record it again."
                    .into(),
            })
            .await;
            return;
        };
        let Some(meter) = pieces.first().map(|p| p.meter.clone()) else {
            self.emit(Backend::TenderFailed {
                basket,
                reason: "The basket has no items; there is nothing to pay for.".into(),
            })
            .await;
            return;
        };
        if let Some(other) = pieces.iter().find(|p| p.meter != meter) {
            self.emit(Backend::TenderFailed {
                basket,
                reason: format!(
                    "{other} is from another meter than the rest of the basket; nothing was recorded."
                ),
            })
            .await;
            return;
        }
        let request_id = match self.baskets.iter().find(|(b, _)| *b == basket) {
            Some((_, id)) => *id,
            None => {
                let id = crate::clock::fresh_request_id().to_bytes();
                if self.baskets.len() >= BASKETS_REMEMBERED_MAX {
                    self.baskets.remove(0);
                }
                self.baskets.push((basket, id));
                id
            }
        };
        let serials: Vec<u64> = pieces.iter().map(|p| p.serial).collect();
        let events = self.events.clone();
        let retry = self.cfg.money_retry_ms_max;
        tokio::spawn(async move {
            let kind = tender.kind.as_str();
            let result = send_retrying::<wire::TenderDone, _>(sessions, retry, |s| {
                s.tender_request(
                    request_id,
                    crate::clock::unix_ms(),
                    &meter,
                    &serials,
                    kind,
                    tender.amount_tendered.get(),
                    tender.change.get(),
                )
            })
            .await;
            let b = match result {
                Ok(done) => Backend::TenderRecorded {
                    basket,
                    pieces: done
                        .pieces
                        .iter()
                        .map(|s| PieceNumber::new(done.meter.clone(), *s))
                        .collect(),
                    tender,
                    total: Cents::new(done.total_cents).unwrap_or(Cents::ZERO),
                    recorded_at_ms: done.recorded_at_ms,
                },
                Err(f) => Backend::TenderFailed {
                    basket,
                    reason: format!("The payment was not recorded: {}", f.words),
                },
            };
            let _ = events.send(b).await;
        });
    }

    pub(super) fn day_report(&mut self, day: crate::indicium::kinds::Day, scope: DayScope) {
        let events = self.events.clone();
        let Some(sessions) = self.sessions() else {
            let _ = events.try_send(Backend::DayReportFailed {
                reason: "Not signed in; sign in to see the day's report.".into(),
            });
            return;
        };
        tokio::spawn(async move {
            let session = sessions.borrow().clone();
            let scope = match scope {
                DayScope::Clerk => "clerk",
                DayScope::Terminal => "terminal",
                DayScope::Office => "office",
            };
            let b = match session.day_report(&day.to_string(), scope).await {
                Ok(r) => Backend::DayReport(Box::new(r)),
                Err(e) => Backend::DayReportFailed {
                    reason: format!("The day's report did not load: {}", reason(&e)),
                },
            };
            let _ = events.send(b).await;
        });
    }

    pub(super) fn refunds_awaiting(&mut self) {
        let events = self.events.clone();
        let Some(sessions) = self.sessions() else {
            let _ = events.try_send(Backend::RefundsAwaitingFailed {
                reason: "Not signed in; a supervisor must sign in to see refund requests.".into(),
            });
            return;
        };
        tokio::spawn(async move {
            let session = sessions.borrow().clone();
            let b = match session.refunds_awaiting(wire::REFUNDS_AWAITING_MAX).await {
                Ok(list) => Backend::RefundsAwaiting(
                    list.pieces
                        .into_iter()
                        .map(|p| RefundAwaiting {
                            number: p.number(),
                            kind: ItemKind::from_code(p.kind).unwrap_or(ItemKind::Postage),
                            amount: Cents::new(p.amount_cents).unwrap_or(Cents::ZERO),
                            authorized_at_ms: p.authorized_at_ms,
                            summary: p.summary,
                            clerk: p.clerk,
                            terminal: p.terminal_id,
                        })
                        .collect(),
                ),
                Err(e) if e.code() == Some(ErrorCode::Forbidden) => {
                    Backend::RefundsAwaitingFailed {
                        reason: NOT_SUPERVISOR_WORDS.into(),
                    }
                }
                Err(e) => Backend::RefundsAwaitingFailed {
                    reason: format!("Refund requests did not load: {}", reason(&e)),
                },
            };
            let _ = events.send(b).await;
        });
    }

    pub(super) async fn decide_refund(&mut self, number: PieceNumber, approve: bool) {
        let Some(sessions) = self.sessions() else {
            self.emit(Backend::RefundDecisionFailed {
                number,
                reason: "Not signed in; nothing was decided.".into(),
            })
            .await;
            return;
        };
        let request_id = crate::clock::fresh_request_id().to_bytes();
        let events = self.events.clone();
        let retry = self.cfg.money_retry_ms_max;
        tokio::spawn(async move {
            let result = send_retrying::<wire::RefundDecided, _>(sessions, retry, |s| {
                s.refund_decide_request(
                    request_id,
                    crate::clock::unix_ms(),
                    &number.meter,
                    number.serial,
                    approve,
                )
            })
            .await;
            match result {
                Ok(d) => {
                    let _ = events
                        .send(Backend::RefundDecided {
                            number,
                            approved: d.approved,
                        })
                        .await;
                    let _ = events
                        .send(Backend::Balance(
                            Cents::new(d.registers.descending_cents).unwrap_or(Cents::ZERO),
                        ))
                        .await;
                }
                Err(f) => {
                    let _ = events
                        .send(Backend::RefundDecisionFailed {
                            number,
                            reason: f.words,
                        })
                        .await;
                }
            }
        });
    }
}
