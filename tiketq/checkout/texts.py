"""What the traveller's pages say, in Bahasa Indonesia (the default) and English."""

from __future__ import annotations

from collections.abc import Callable

from werkzeug.datastructures import LanguageAccept

DEFAULT = "id"
LANGUAGES = {"id": "Bahasa Indonesia", "en": "English"}

TEXTS: dict[str, dict[str, str]] = {
    "id": {
        "language": "Bahasa",
        "secured_by": "Pembayaran diproses dengan aman oleh Midtrans.",
        "title.checkout": "Pembayaran",
        "title.receipt": "Bukti pembayaran",
        "order": "Nomor pesanan",
        "order.summary": "Ringkasan pesanan",
        "total": "Total",
        "pay_before": "Bayar sebelum",
        "time_left": "Sisa waktu",
        "customer": "Data pemesan",
        "customer.name": "Atas nama",
        "email": "Email",
        "phone": "Nomor ponsel",
        "pay": "Bayar sekarang",
        "pay.reopen": "Buka lagi jendela pembayaran",
        "pay.closed": "Jendela pembayaran ditutup. Anda dapat membukanya lagi selama waktu "
        "pembayaran belum habis.",
        "pay.checking": "Memeriksa status pembayaran…",
        "pay.unavailable": "Jendela pembayaran belum dapat dimuat. Periksa koneksi Anda, lalu "
        "coba lagi.",
        "pay.method_chosen": "Anda sudah memilih metode pembayaran.",
        "pay.see_instructions": "Lihat petunjuk pembayaran",
        "pay.processing": "Pembayaran Anda sedang diverifikasi.",
        "ended.expired": "Waktu pembayaran untuk tagihan ini sudah habis.",
        "ended.failed": "Pembayaran ini gagal.",
        "ended.retry_hint": "Anda dapat membayar pesanan ini lagi dengan tagihan baru.",
        "retry": "Bayar lagi",
        "form.expired": "Formulir sudah kedaluwarsa. Silakan kirim ulang.",
        "status.pending": "Menunggu pembayaran",
        "status.pending.no_method": "Belum memilih metode pembayaran",
        "status.processing": "Sedang diverifikasi",
        "status.success": "Lunas",
        "status.failed": "Gagal",
        "status.canceled": "Dibatalkan",
        "status.expired": "Kedaluwarsa",
        "status.refunded": "Dana dikembalikan",
        "status.overdue": "Kedaluwarsa, menunggu konfirmasi",
        "detail.partial_refund": "Sebagian dana sudah dikembalikan.",
        "receipt.status": "Status",
        "receipt.amount": "Jumlah",
        "receipt.method": "Metode",
        "receipt.paid_at": "Dibayar pada",
        "receipt.reference": "Nomor referensi",
        "receipt.card": "Kartu",
        "receipt.approval_code": "Kode persetujuan",
        "receipt.next": "Langkah berikutnya",
        "receipt.updating": "Halaman ini diperbarui otomatis saat pembayaran Anda diterima.",
        "receipt.print": "Cetak",
        "receipt.pay_now": "Lanjutkan pembayaran",
        "receipt.no_method": "Anda belum memilih metode pembayaran.",
        "receipt.processing": "Pembayaran kartu Anda sedang diperiksa. Halaman ini akan berubah "
        "begitu hasilnya ada.",
        "receipt.overdue": "Waktu pembayaran sudah habis. Kami menunggu konfirmasi terakhir dari "
        "Midtrans: jika pembayaran Anda masuk tepat waktu, halaman ini berubah menjadi Lunas "
        "dengan sendirinya.",
        "receipt.success": "Pembayaran Anda sudah kami terima.",
        "receipt.close": "Anda dapat menutup halaman ini.",
        "back": "Kembali ke TiketQ",
        "copy": "Salin",
        "copy.done": "Tersalin",
        "copy.failed": "Tidak dapat menyalin; tekan lama angkanya untuk menyalin.",
        "receipt.canceled": "Pembayaran ini dibatalkan. Tidak ada dana yang ditarik.",
        "receipt.failed": "Pembayaran ini tidak berhasil dan tidak ada dana yang ditarik.",
        "receipt.expired": "Waktu pembayaran habis sebelum pembayaran diterima.",
        "receipt.refunded": "Dana pembayaran ini sudah dikembalikan.",
        "va.how": "Transfer tepat sebesar jumlah tagihan ke nomor virtual account ini melalui "
        "m-banking, internet banking, atau ATM.",
        "va.bank": "Bank",
        "va.number": "Nomor virtual account",
        "bill.how": "Bayar melalui aplikasi Livin' by Mandiri atau ATM Mandiri (menu "
        "Bayar/Multipayment) dengan kode berikut.",
        "bill.biller_code": "Kode perusahaan",
        "bill.key": "Kode pembayaran",
        "store.how": "Tunjukkan kode pembayaran ini ke kasir {store} dan bayar tunai.",
        "store.code": "Kode pembayaran",
        "qr.title": "Kode QR pembayaran",
        "qr.how": "Pindai kode QR ini dengan aplikasi e-wallet atau m-banking yang mendukung QRIS.",
        "wallet.open": "Bayar di aplikasi {app}",
        "wallet.how": "Selesaikan pembayaran di aplikasi {app}.",
        "window.how": "Selesaikan pembayaran di jendela pembayaran Midtrans.",
        "window.open": "Buka jendela pembayaran",
        "method.bank_transfer": "Transfer bank (virtual account)",
        "method.echannel": "Mandiri Bill Payment",
        "method.credit_card": "Kartu kredit/debit",
        "method.cstore": "Gerai retail",
        "not_found.title": "Pembayaran tidak ditemukan",
        "not_found.body": "Periksa kembali tautan dari email atau aplikasi TiketQ Anda.",
        "error.title": "Terjadi kesalahan",
        "error.body": "Permintaan Anda tidak dapat diproses. Silakan coba lagi sebentar lagi.",
        "error.gateway": "Layanan pembayaran sedang tidak tersedia. Silakan coba lagi sebentar "
        "lagi.",
        "error.conflict": "Pembayaran ini sudah tidak dapat diubah.",
    },
    "en": {
        "language": "Language",
        "secured_by": "Payments are processed securely by Midtrans.",
        "title.checkout": "Payment",
        "title.receipt": "Payment receipt",
        "order": "Order number",
        "order.summary": "Order summary",
        "total": "Total",
        "pay_before": "Pay before",
        "time_left": "Time left",
        "customer": "Your details",
        "customer.name": "Name",
        "email": "Email",
        "phone": "Mobile number",
        "pay": "Pay now",
        "pay.reopen": "Reopen the payment window",
        "pay.closed": "The payment window was closed. You can open it again until the time to "
        "pay runs out.",
        "pay.checking": "Checking the payment status…",
        "pay.unavailable": "The payment window could not be loaded yet. Check your connection "
        "and try again.",
        "pay.method_chosen": "You have already chosen a payment method.",
        "pay.see_instructions": "See how to pay",
        "pay.processing": "Your payment is being verified.",
        "ended.expired": "The time to pay this bill has run out.",
        "ended.failed": "This payment failed.",
        "ended.retry_hint": "You can pay this order again with a new bill.",
        "retry": "Pay again",
        "form.expired": "The form expired. Please send it again.",
        "status.pending": "Waiting for payment",
        "status.pending.no_method": "No payment method chosen yet",
        "status.processing": "Being verified",
        "status.success": "Paid",
        "status.failed": "Failed",
        "status.canceled": "Canceled",
        "status.expired": "Expired",
        "status.refunded": "Refunded",
        "status.overdue": "Expired, awaiting confirmation",
        "detail.partial_refund": "Part of the payment has been refunded.",
        "receipt.status": "Status",
        "receipt.amount": "Amount",
        "receipt.method": "Method",
        "receipt.paid_at": "Paid at",
        "receipt.reference": "Reference",
        "receipt.card": "Card",
        "receipt.approval_code": "Approval code",
        "receipt.next": "What to do next",
        "receipt.updating": "This page updates itself when your payment arrives.",
        "receipt.print": "Print",
        "receipt.pay_now": "Continue to payment",
        "receipt.no_method": "You have not chosen a payment method yet.",
        "receipt.processing": "Your card payment is being checked. This page changes as soon as "
        "there is an answer.",
        "receipt.overdue": "The time to pay has run out. We are waiting for Midtrans's last word: "
        "if your payment arrived in time, this page turns Paid by itself.",
        "receipt.success": "We have received your payment.",
        "receipt.close": "You can close this page.",
        "back": "Back to TiketQ",
        "copy": "Copy",
        "copy.done": "Copied",
        "copy.failed": "Could not copy; press and hold the number to copy it.",
        "receipt.canceled": "This payment was canceled. No money was taken.",
        "receipt.failed": "This payment did not go through and no money was taken.",
        "receipt.expired": "The time to pay ran out before the payment arrived.",
        "receipt.refunded": "This payment has been refunded.",
        "va.how": "Transfer exactly the amount due to this virtual account number from mobile "
        "banking, internet banking or an ATM.",
        "va.bank": "Bank",
        "va.number": "Virtual account number",
        "bill.how": "Pay in the Livin' by Mandiri app or at a Mandiri ATM (Pay/Multipayment "
        "menu) with these codes.",
        "bill.biller_code": "Biller code",
        "bill.key": "Bill key",
        "store.how": "Show this payment code at the {store} cashier and pay in cash.",
        "store.code": "Payment code",
        "qr.title": "Payment QR code",
        "qr.how": "Scan this QR code with any e-wallet or mobile banking app that accepts QRIS.",
        "wallet.open": "Pay in the {app} app",
        "wallet.how": "Finish paying in the {app} app.",
        "window.how": "Finish paying in the Midtrans payment window.",
        "window.open": "Open the payment window",
        "method.bank_transfer": "Bank transfer (virtual account)",
        "method.echannel": "Mandiri Bill Payment",
        "method.credit_card": "Credit/debit card",
        "method.cstore": "Retail store",
        "not_found.title": "Payment not found",
        "not_found.body": "Check the link in your TiketQ email or app.",
        "error.title": "Something went wrong",
        "error.body": "Your request could not be handled. Please try again in a moment.",
        "error.gateway": "The payment service is unavailable. Please try again in a moment.",
        "error.conflict": "This payment can no longer be changed.",
    },
}

# Brand names read the same in both languages.
METHOD_NAMES = {
    "gopay": "GoPay",
    "shopeepay": "ShopeePay",
    "qris": "QRIS",
    "ovo": "OVO",
    "dana": "DANA",
    "akulaku": "Akulaku PayLater",
    "kredivo": "Kredivo",
}


def choose(remembered: str | None, accepted: LanguageAccept) -> str:
    """The page language: the one picked on the page, else the browser's preference, else id."""
    if remembered in LANGUAGES:
        return remembered
    return accepted.best_match(LANGUAGES, default=DEFAULT) or DEFAULT


def translator(lang: str) -> Callable[..., str]:
    """A function that looks a text up in `lang` and fills in its {placeholders}."""
    table = TEXTS[lang]

    def text(key: str, **values: object) -> str:
        found = table[key]
        return found.format(**values) if values else found

    return text


def method_name(payment_type: str | None, lang: str) -> str | None:
    """The traveller's name for a Midtrans payment_type."""
    if payment_type is None:
        return None
    return TEXTS[lang].get(f"method.{payment_type}") or METHOD_NAMES.get(payment_type, payment_type)
