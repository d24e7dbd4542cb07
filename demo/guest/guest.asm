; The demo's guest: a small x86 program the VM panel boots from the selected
; disk (assembled with nasm by scripts/build-demo-assets.mjs; nothing is
; downloaded). It shows a screen in VGA text mode and prints to COM1, asks the
; BIOS how big the disk is, then writes 64 sectors spread over the whole disk
; (one every timer tick), reads each one back and checks it. The demo's
; allocation map fills in as the writes land in the image.
;
; Layout: sector 0 is the boot sector (loader); the rest of the program follows
; in sectors 1.. and is loaded at 0x7e00.
bits 16
org 0x7c00

STAGE2_SECTORS equ 7
WRITES         equ 64
FIRST_LBA      equ 2048         ; 1 MiB in: past the program
BUF            equ 0x9000       ; sector buffer for writes
RBUF           equ 0x9200       ; sector buffer for read-back

boot:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    sti
    mov [drive], dl
    ; load the rest of the program (CHS 0/0/2.., STAGE2_SECTORS sectors)
    mov ax, 0x0200 + STAGE2_SECTORS
    mov cx, 0x0002
    xor dh, dh
    mov bx, 0x7e00
    int 0x13
    jc .fail
    jmp main
.fail:
    mov si, msg_loadfail
.p: lodsb
    test al, al
    jz .h
    mov ah, 0x0e
    int 0x10
    jmp .p
.h: hlt
    jmp .h

msg_loadfail: db "DiskWorker guest: could not load stage 2", 0
drive: db 0

times 510 - ($ - $$) db 0
dw 0xaa55

; ---------------------------------------------------------------- stage 2
main:
    call serial_init
    mov ax, 0x0003              ; 80x25 text mode
    int 0x10
    mov ah, 0x01                ; hide the cursor
    mov cx, 0x2000
    int 0x10
    mov ax, 0xb800
    mov es, ax
    ; fill the screen: dark blue background, light grey text
    xor di, di
    mov ax, 0x1720
    mov cx, 80 * 25
    rep stosw
    ; title bar
    xor di, di
    mov ax, 0x3020
    mov cx, 80
    rep stosw
    mov bx, 0 * 80 + 2
    mov ah, 0x30
    mov si, s_title
    call print_at
    mov bx, 2 * 80 + 2
    mov ah, 0x1f
    mov si, s_intro1
    call print_at
    mov bx, 3 * 80 + 2
    mov ah, 0x17
    mov si, s_intro2
    call print_at
    mov bx, 4 * 80 + 2
    mov si, s_intro3
    call print_at

    mov si, ser_boot
    call serial_puts

    call disk_size              ; -> [sectors]
    mov bx, 6 * 80 + 2
    mov ah, 0x17
    mov si, s_size
    call print_at
    mov eax, [sectors]
    shr eax, 11                 ; MiB
    mov bx, 6 * 80 + 14
    mov byte [attr], 0x1e
    call print_dec_at_attr
    mov si, s_mib
    mov ah, 0x17
    call print_at

    mov si, ser_size
    call serial_puts
    mov eax, [sectors]
    shr eax, 11
    call serial_dec
    mov si, ser_mib
    call serial_puts

    ; step = (sectors - FIRST_LBA) / WRITES, at least 1
    mov eax, [sectors]
    sub eax, FIRST_LBA
    xor edx, edx
    mov ecx, WRITES
    div ecx
    test eax, eax
    jnz .step_ok
    inc eax
.step_ok:
    mov [step], eax

    ; progress bar frame
    mov bx, 9 * 80 + 2
    mov ah, 0x17
    mov si, s_writing
    call print_at
    mov di, (11 * 80 + 2) * 2
    mov ax, 0x18fa
    mov cx, WRITES
    rep stosw

    xor ecx, ecx                ; i
.loop:
    mov [index], ecx
    ; lba = FIRST_LBA + i * step
    mov eax, [step]
    mul ecx
    add eax, FIRST_LBA
    mov [lba], eax
    call fill_sector
    mov bh, 0x43                ; extended write
    call ext_io
    jc .fail
    mov bh, 0x42                ; extended read into RBUF
    mov word [dap_buf], RBUF
    call ext_io
    mov word [dap_buf], BUF
    jc .fail
    push es
    xor ax, ax
    mov es, ax
    mov si, BUF
    mov di, RBUF
    mov cx, 256
    repe cmpsw
    pop es
    jne .fail
    ; one block of the progress bar
    mov ecx, [index]
    mov di, cx
    add di, 11 * 80 + 2
    shl di, 1
    mov word [es:di], 0x2adb
    ; counter "n of 64"
    mov bx, 9 * 80 + 32
    mov byte [attr], 0x1e
    mov eax, ecx
    inc eax
    call print_dec_at_attr
    mov si, s_of64
    mov ah, 0x17
    call print_at
    ; last LBA written
    mov bx, 13 * 80 + 2
    mov ah, 0x17
    mov si, s_last
    call print_at
    mov byte [attr], 0x1e
    mov eax, [lba]
    shr eax, 11
    call print_dec_at_attr
    mov si, s_mib_pad
    mov ah, 0x17
    call print_at
    ; wait for the next timer tick, so the writes are visible one by one
    call wait_tick
    mov ecx, [index]
    inc ecx
    cmp ecx, WRITES
    jb .loop

    mov bx, 16 * 80 + 2
    mov ah, 0x1a
    mov si, s_done
    call print_at
    mov bx, 18 * 80 + 2
    mov ah, 0x17
    mov si, s_after
    call print_at
    mov si, ser_done
    call serial_puts
    jmp idle

.fail:
    mov bx, 16 * 80 + 2
    mov ah, 0x4f
    mov si, s_fail
    call print_at
    mov si, ser_fail
    call serial_puts
idle:
    sti
    hlt
    jmp idle

; ---------------------------------------------------------------- helpers
; disk size in sectors -> [sectors] (int 13h ah=48h; 32768 when unknown)
disk_size:
    mov dword [sectors], 32768
    mov ah, 0x48
    mov dl, [drive]
    mov si, edd
    mov word [edd], 0x1a
    int 0x13
    jc .ret
    mov eax, [edd + 0x10]
    cmp dword [edd + 0x14], 0
    je .low
    mov eax, 0xffffffff
.low:
    test eax, eax
    jz .ret
    mov [sectors], eax
.ret:
    ret

; int 13h extended read/write (bh = 42h/43h) of one sector at [lba]
ext_io:
    mov eax, [lba]
    mov [dap_lba], eax
    mov si, dap
    mov dl, [drive]
    mov ah, bh
    xor al, al
    int 0x13
    ret

; BUF = "DISKWORKER GUEST WRITE #i LBA n" padded with a pattern
fill_sector:
    push es
    xor ax, ax
    mov es, ax
    mov di, BUF
    mov cx, 512
    mov al, [index]
.pat:
    stosb
    inc al
    loop .pat
    mov di, BUF
    mov si, sec_tag
.tag:
    lodsb
    test al, al
    jz .tagdone
    stosb
    jmp .tag
.tagdone:
    mov al, [index]
    stosb
    pop es
    ret

wait_tick:
    sti
    push ds
    xor ax, ax
    mov ds, ax
    mov ax, [0x46c]
.w: hlt
    cmp ax, [0x46c]
    je .w
    pop ds
    ret

; print NUL-terminated ds:si at cell bx with attribute ah; bx advances
print_at:
    push di
    mov di, bx
    shl di, 1
.l: lodsb
    test al, al
    jz .e
    stosw
    inc bx
    jmp .l
.e: pop di
    ret

; print eax in decimal at cell bx with attribute [attr]; bx advances
print_dec_at_attr:
    push di
    mov ecx, 10
    xor si, si
.div:
    xor edx, edx
    div ecx
    push dx
    inc si
    test eax, eax
    jnz .div
    mov di, bx
    shl di, 1
    mov ah, [attr]
.out:
    pop dx
    mov al, dl
    add al, '0'
    stosw
    inc bx
    dec si
    jnz .out
    pop di
    ret

serial_init:
    mov dx, 0x3f9
    xor al, al
    out dx, al
    mov dx, 0x3fb
    mov al, 0x80
    out dx, al
    mov dx, 0x3f8
    mov al, 1
    out dx, al
    mov dx, 0x3f9
    xor al, al
    out dx, al
    mov dx, 0x3fb
    mov al, 3
    out dx, al
    ret

serial_puts:
    lodsb
    test al, al
    jz .r
    call serial_putc
    jmp serial_puts
.r: ret

serial_putc:
    push dx
    push ax
    mov dx, 0x3fd
.w: in al, dx
    test al, 0x20
    jz .w
    pop ax
    mov dx, 0x3f8
    out dx, al
    pop dx
    ret

; eax in decimal to COM1
serial_dec:
    mov ecx, 10
    xor bx, bx
.d: xor edx, edx
    div ecx
    push dx
    inc bx
    test eax, eax
    jnz .d
.o: pop ax
    add al, '0'
    call serial_putc
    dec bx
    jnz .o
    ret

; ---------------------------------------------------------------- data
s_title:   db "DiskWorker guest  -  booted by v86 from an image in your browser", 0
s_intro1:  db "This program was read from the disk you selected, through DiskWorker's", 0
s_intro2:  db "block layer (a Web Worker). Each write below lands in the image: watch the", 0
s_intro3:  db "allocation map above this screen fill in.", 0
s_size:    db "Disk size:  ", 0
s_mib:     db " MiB", 0
s_mib_pad: db " MiB     ", 0
s_writing: db "Writing and verifying sectors ", 0
s_of64:    db " of 64", 0
s_last:    db "Last write at: ", 0
s_done:    db "All 64 writes read back correctly. The guest is idle now.", 0
s_after:   db "Stop the VM, then look at the map, the console (read -v) or export the disk.", 0
s_fail:    db "A disk request failed or read back wrong data.", 0
ser_boot:  db "DISKWORKER GUEST BOOTED", 10, 0
ser_size:  db "disk size ", 0
ser_mib:   db " MiB", 10, 0
ser_done:  db "GUEST DONE: 64 writes verified", 10, 0
ser_fail:  db "GUEST FAIL", 10, 0
sec_tag:   db "DISKWORKER GUEST WRITE #", 0

align 4
sectors: dd 0
step:    dd 0
index:   dd 0
lba:     dd 0
attr:    db 0
align 4
dap:     db 0x10, 0
         dw 1
dap_buf: dw BUF, 0
dap_lba: dd 0, 0
edd:     times 0x1e db 0

times (1 + STAGE2_SECTORS) * 512 - ($ - $$) db 0
